// Package v1alpha1 is the egress.egressgw.io API that the aggregated API server serves:
// PodEgress (one per pod, read-only), EgressPolicyView (one per EgressNATPolicy,
// read-only, with a pods subresource) and EgressPreview (create-only, review-style).
//
// These types are computed, never stored: the package is skipped by the CRD generator
// (+kubebuilder:skip), and the server registers them as their own internal version.
//
// +kubebuilder:object:generate=true
// +kubebuilder:skip
// +k8s:openapi-gen=true
// +k8s:openapi-model-package=io.egressgw.egress.v1alpha1
// +groupName=egress.egressgw.io
package v1alpha1
