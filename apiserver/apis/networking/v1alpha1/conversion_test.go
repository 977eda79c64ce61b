package v1alpha1

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/randfill"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
)

func specPolicy() *EgressNATPolicy {
	frontend := func(user string) v1.EgressSource {
		return v1.EgressSource{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"user": user}},
			PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"role": "frontend"}},
		}
	}
	return &EgressNATPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "egress"},
		Spec: EgressNATPolicySpec{
			Egress:           []v1.EgressSource{frontend("alice"), frontend("paul")},
			DestinationCIDRs: []string{"8.8.8.0/24"},
			EgressSourceIP:   "192.168.1.100",
		},
	}
}

func TestToV1(t *testing.T) {
	tests := []struct {
		name string
		in   *EgressNATPolicy
		want v1.EgressNATPolicySpec
	}{{
		name: "the spec's v1alpha1 example keeps its egressSourceIP and gets action SNAT",
		in:   specPolicy(),
		want: v1.EgressNATPolicySpec{
			Sources:        specPolicy().Spec.Egress,
			Action:         v1.ActionSNAT,
			Destinations:   []v1.Destination{{CIDR: "8.8.8.0/24"}},
			EgressSourceIP: "192.168.1.100",
		},
	}, {
		name: "v1 fields come back from the annotation, which is consumed",
		in: func() *EgressNATPolicy {
			p := specPolicy()
			p.Spec.EgressSourceIP = ""
			p.Annotations = map[string]string{V1FieldsAnnotation: `{"action":"SNAT","gatewayRef":{"name":"default","namespace":"kube-system"}}`}
			return p
		}(),
		want: v1.EgressNATPolicySpec{
			Sources:      specPolicy().Spec.Egress,
			Action:       v1.ActionSNAT,
			Destinations: []v1.Destination{{CIDR: "8.8.8.0/24"}},
			GatewayRef:   &v1.GatewayReference{Name: "default", Namespace: "kube-system"},
		},
	}, {
		name: "allowClusterOverlap comes back from the annotation",
		in: func() *EgressNATPolicy {
			p := specPolicy()
			p.Spec.DestinationCIDRs = []string{"0.0.0.0/0"}
			p.Annotations = map[string]string{V1FieldsAnnotation: `{"action":"SNAT","allowClusterOverlap":true}`}
			return p
		}(),
		want: v1.EgressNATPolicySpec{
			Sources:             specPolicy().Spec.Egress,
			Action:              v1.ActionSNAT,
			Destinations:        []v1.Destination{{CIDR: "0.0.0.0/0"}},
			EgressSourceIP:      "192.168.1.100",
			AllowClusterOverlap: true,
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got v1.EgressNATPolicy
			ToV1(tt.in, &got)
			if diff := cmp.Diff(tt.want, got.Spec); diff != "" {
				t.Errorf("spec (-want +got):\n%s", diff)
			}
			if _, ok := got.Annotations[V1FieldsAnnotation]; ok {
				t.Errorf("annotation %s left on the v1 object", V1FieldsAnnotation)
			}
			if got.APIVersion != "networking.gke.io/v1" || got.Kind != "EgressNATPolicy" {
				t.Errorf("type meta = %s %s", got.APIVersion, got.Kind)
			}
		})
	}
}

func TestUnparsableAnnotationIsKept(t *testing.T) {
	in := specPolicy()
	in.Annotations = map[string]string{V1FieldsAnnotation: "not json"}
	var got v1.EgressNATPolicy
	ToV1(in, &got)
	if got.Annotations[V1FieldsAnnotation] != "not json" || got.Spec.GatewayRef != nil {
		t.Errorf("got annotations %v, gatewayRef %v; want the annotation kept and no gatewayRef", got.Annotations, got.Spec.GatewayRef)
	}
}

// FuzzRoundTrip fills both versions with random content and checks that converting to the
// other version and back loses nothing.
func FuzzRoundTrip(f *testing.F) {
	for seed := range int64(50) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, seed int64) {
		filler := randfill.NewWithSeed(seed).NilChance(0.2).NumElements(0, 3)

		var alpha EgressNATPolicy
		filler.Fill(&alpha)
		alpha.TypeMeta = metav1.TypeMeta{APIVersion: "networking.gke.io/v1alpha1", Kind: "EgressNATPolicy"}
		var hub v1.EgressNATPolicy
		var back EgressNATPolicy
		if err := alpha.ConvertTo(&hub); err != nil {
			t.Fatal(err)
		}
		if err := back.ConvertFrom(&hub); err != nil {
			t.Fatal(err)
		}
		if !apiequality.Semantic.DeepEqual(&alpha, &back) {
			t.Errorf("v1alpha1 -> v1 -> v1alpha1 lost data (-want +got):\n%s", cmp.Diff(&alpha, &back))
		}

		var current v1.EgressNATPolicy
		filler.Fill(&current)
		current.TypeMeta = metav1.TypeMeta{APIVersion: "networking.gke.io/v1", Kind: "EgressNATPolicy"}
		var mid EgressNATPolicy
		var again v1.EgressNATPolicy
		if err := mid.ConvertFrom(&current); err != nil {
			t.Fatal(err)
		}
		if err := mid.ConvertTo(&again); err != nil {
			t.Fatal(err)
		}
		if !apiequality.Semantic.DeepEqual(&current, &again) {
			t.Errorf("v1 -> v1alpha1 -> v1 lost data (-want +got):\n%s", cmp.Diff(&current, &again))
		}
	})
}
