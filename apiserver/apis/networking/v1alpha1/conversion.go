package v1alpha1

import (
	"encoding/json"
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/conversion"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
)

// V1FieldsAnnotation holds, on a v1alpha1 EgressNATPolicy, the v1 fields that v1alpha1 has
// no place for (action, gatewayRef and allowClusterOverlap), so that a policy written as v1 and read as v1alpha1
// converts back to the same v1 object. The key is reserved: conversion owns it.
const V1FieldsAnnotation = "networking.gke.io/v1-fields"

// v1Fields is the content of V1FieldsAnnotation. A nil field was absent in v1.
type v1Fields struct {
	Action     *v1.EgressAction     `json:"action,omitempty"`
	GatewayRef *v1.GatewayReference `json:"gatewayRef,omitempty"`
	// AllowClusterOverlap is v1's opt-in for destinations that cover the cluster.
	AllowClusterOverlap bool `json:"allowClusterOverlap,omitempty"`
}

var _ conversion.Convertible = &EgressNATPolicy{}

// ConvertTo converts this policy to the v1 hub.
func (src *EgressNATPolicy) ConvertTo(hub conversion.Hub) error {
	dst, ok := hub.(*v1.EgressNATPolicy)
	if !ok {
		return fmt.Errorf("cannot convert EgressNATPolicy v1alpha1 to %T", hub)
	}
	ToV1(src, dst)
	return nil
}

// ConvertFrom converts the v1 hub to this version.
func (dst *EgressNATPolicy) ConvertFrom(hub conversion.Hub) error {
	src, ok := hub.(*v1.EgressNATPolicy)
	if !ok {
		return fmt.Errorf("cannot convert %T to EgressNATPolicy v1alpha1", hub)
	}
	FromV1(src, dst)
	return nil
}

// ToV1 converts a v1alpha1 policy to v1: egress becomes sources, destinationCIDRs become
// destinations, and egressSourceIP is kept as v1's legacy egressSourceIP. The action is
// SNAT, the only one v1alpha1 knows, unless V1FieldsAnnotation says otherwise.
func ToV1(src *EgressNATPolicy, dst *v1.EgressNATPolicy) {
	src.ObjectMeta.DeepCopyInto(&dst.ObjectMeta)
	dst.TypeMeta.APIVersion, dst.TypeMeta.Kind = v1.SchemeGroupVersion.String(), "EgressNATPolicy"
	dst.Spec = v1.EgressNATPolicySpec{Action: v1.ActionSNAT, EgressSourceIP: src.Spec.EgressSourceIP}
	for i := range src.Spec.Egress {
		dst.Spec.Sources = append(dst.Spec.Sources, *src.Spec.Egress[i].DeepCopy())
	}
	for _, cidr := range src.Spec.DestinationCIDRs {
		dst.Spec.Destinations = append(dst.Spec.Destinations, v1.Destination{CIDR: cidr})
	}
	if raw, ok := dst.Annotations[V1FieldsAnnotation]; ok {
		var fields v1Fields
		// An annotation that does not parse was not written by FromV1: leave it alone.
		if err := json.Unmarshal([]byte(raw), &fields); err == nil {
			if fields.Action != nil {
				dst.Spec.Action = *fields.Action
			}
			dst.Spec.GatewayRef = fields.GatewayRef
			dst.Spec.AllowClusterOverlap = fields.AllowClusterOverlap
			delete(dst.Annotations, V1FieldsAnnotation)
			if len(dst.Annotations) == 0 {
				dst.Annotations = nil
			}
		}
	}
	src.Status.DeepCopyInto(&dst.Status)
}

// FromV1 converts a v1 policy to v1alpha1. The v1 fields that v1alpha1 cannot hold, a
// gatewayRef, an action other than SNAT or allowClusterOverlap, go into V1FieldsAnnotation.
func FromV1(src *v1.EgressNATPolicy, dst *EgressNATPolicy) {
	src.ObjectMeta.DeepCopyInto(&dst.ObjectMeta)
	dst.TypeMeta.APIVersion, dst.TypeMeta.Kind = SchemeGroupVersion.String(), "EgressNATPolicy"
	dst.Spec = EgressNATPolicySpec{EgressSourceIP: src.Spec.EgressSourceIP}
	for i := range src.Spec.Sources {
		dst.Spec.Egress = append(dst.Spec.Egress, *src.Spec.Sources[i].DeepCopy())
	}
	for _, d := range src.Spec.Destinations {
		dst.Spec.DestinationCIDRs = append(dst.Spec.DestinationCIDRs, d.CIDR)
	}
	if src.Spec.GatewayRef != nil || src.Spec.Action != v1.ActionSNAT || src.Spec.AllowClusterOverlap {
		action := src.Spec.Action
		// Marshal cannot fail: the struct holds only strings and a bool.
		raw, _ := json.Marshal(v1Fields{Action: &action, GatewayRef: src.Spec.GatewayRef.DeepCopy(),
			AllowClusterOverlap: src.Spec.AllowClusterOverlap})
		if dst.Annotations == nil {
			dst.Annotations = map[string]string{}
		}
		dst.Annotations[V1FieldsAnnotation] = string(raw)
	}
	src.Status.DeepCopyInto(&dst.Status)
}

// AllowsClusterOverlap reports whether a v1alpha1 policy carries v1's allowClusterOverlap,
// which only conversion's V1FieldsAnnotation can hold.
func AllowsClusterOverlap(p *EgressNATPolicy) bool {
	var fields v1Fields
	raw, ok := p.Annotations[V1FieldsAnnotation]
	return ok && json.Unmarshal([]byte(raw), &fields) == nil && fields.AllowClusterOverlap
}
