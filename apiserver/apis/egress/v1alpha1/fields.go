package v1alpha1

import (
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
)

// PodEgressFields are the field selectors podegresses support, as in
// kubectl get podegresses --field-selector pod.nodeName=node1.
func PodEgressFields(v *PodEgress) fields.Set {
	return fields.Set{
		"metadata.name":      v.Name,
		"metadata.namespace": v.Namespace,
		"pod.nodeName":       v.Pod.NodeName,
		"pod.ip":             v.Pod.IP,
	}
}

// EgressPolicyViewFields are the field selectors egresspolicyviews support.
func EgressPolicyViewFields(v *EgressPolicyView) fields.Set {
	return fields.Set{
		"metadata.name": v.Name,
		"gatewayNode":   v.GatewayNode,
		"egressIP":      v.EgressIP,
	}
}

// addFieldLabelConversions lets the server accept these field selectors; any other is
// refused with 400 Bad Request.
func addFieldLabelConversions(scheme *runtime.Scheme) error {
	for kind, set := range map[string]fields.Set{
		"PodEgress":        PodEgressFields(&PodEgress{}),
		"EgressPolicyView": EgressPolicyViewFields(&EgressPolicyView{}),
	} {
		err := scheme.AddFieldLabelConversionFunc(SchemeGroupVersion.WithKind(kind), func(label, value string) (string, string, error) {
			if _, ok := set[label]; !ok {
				return "", "", fmt.Errorf("field label %q is not supported for %s: use one of %v", label, kind, fieldNames(set))
			}
			return label, value, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func fieldNames(set fields.Set) []string {
	out := make([]string, 0, len(set))
	for name := range set {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}
