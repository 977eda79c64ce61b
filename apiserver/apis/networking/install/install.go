// Package install registers the networking.gke.io API in a scheme, as sample-apiserver's
// install packages do: every component builds a scheme of its own with it, and none
// needs another component's package for it. Nothing global is changed.
package install

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/apiserver/apis/networking/v1alpha1"
)

// Install adds every version of networking.gke.io to scheme: v1, the storage version and
// conversion hub, and the legacy v1alpha1.
func Install(scheme *runtime.Scheme) error {
	for _, add := range []func(*runtime.Scheme) error{v1.AddToScheme, v1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			return fmt.Errorf("building the networking.gke.io scheme: %w", err)
		}
	}
	return nil
}

// NewScheme returns a scheme with Kubernetes' built-in types and every version of
// networking.gke.io: what a client of the cluster reads and decodes with.
func NewScheme() (*runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("building the scheme: %w", err)
	}
	if err := Install(scheme); err != nil {
		return nil, err
	}
	return scheme, nil
}
