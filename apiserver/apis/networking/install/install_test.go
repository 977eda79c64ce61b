package install

import (
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/egressgw/egressgw/apiserver/apis/networking"
)

// TestNewScheme: every kind a component reads is known, in every version it is served in.
func TestNewScheme(t *testing.T) {
	scheme, err := NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	for _, gvk := range []schema.GroupVersionKind{
		{Group: networking.GroupName, Version: "v1", Kind: "NetworkGatewayGroup"},
		{Group: networking.GroupName, Version: "v1", Kind: "EgressNATPolicy"},
		{Group: networking.GroupName, Version: "v1", Kind: "NetworkGatewayNode"},
		{Group: networking.GroupName, Version: "v1alpha1", Kind: "AnthosNetworkGateway"},
		{Group: networking.GroupName, Version: "v1alpha1", Kind: "AnthosNetworkGatewayNode"},
		{Group: networking.GroupName, Version: "v1alpha1", Kind: "EgressNATPolicy"},
		coordinationv1.SchemeGroupVersion.WithKind("Lease"),
	} {
		if !scheme.Recognizes(gvk) {
			t.Errorf("the scheme does not know %s", gvk)
		}
	}
	// A scheme of the caller's own: installing twice into fresh schemes works.
	if err := Install(runtime.NewScheme()); err != nil {
		t.Errorf("Install into a fresh scheme: %v", err)
	}
}
