package webhook

import (
	"fmt"
	"net/http"

	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/conversion"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/apiserver/apis/networking/v1alpha1"
)

// ConversionPath is where kube-apiserver sends ConversionReviews.
const ConversionPath = "/convert"

// NewScheme returns a scheme with every networking.gke.io version.
func NewScheme() (*runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{v1.AddToScheme, v1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			return nil, fmt.Errorf("building the networking.gke.io scheme: %w", err)
		}
	}
	return scheme, nil
}

// NewConversionHandler returns the handler for ConversionPath. It converts through the v1
// hub, with the functions in the API packages.
func NewConversionHandler(scheme *runtime.Scheme) http.Handler {
	return conversion.NewWebhookHandler(scheme, conversion.NewRegistry())
}
