// Package install registers the egress.egressgw.io API, the aggregated server's computed
// views, in a scheme the caller owns, as sample-apiserver's install packages do.
package install

import (
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/egressgw/egressgw/apiserver/apis/egress/v1alpha1"
)

// Install adds v1alpha1, and the same types as the internal version, to scheme, with
// v1alpha1 the preferred version.
func Install(scheme *runtime.Scheme) error {
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	return scheme.SetVersionPriority(v1alpha1.SchemeGroupVersion)
}
