// Package webhook serves what kube-apiserver calls back into: admission of the
// networking.gke.io objects, CRD conversion between EgressNATPolicy v1alpha1 and v1, and
// authorization of the node agent's reads of pods. It decides nothing itself: the rules
// live in validation and podaccess, conversion with the API types.
package webhook
