package webhook

import (
	"net/http"

	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/conversion"
)

// ConversionPath is where kube-apiserver sends ConversionReviews.
const ConversionPath = "/convert"

// NewConversionHandler returns the handler for ConversionPath. It converts through the v1
// hub, with the functions in the API packages.
func NewConversionHandler(scheme *runtime.Scheme) http.Handler {
	return conversion.NewWebhookHandler(scheme, conversion.NewRegistry())
}
