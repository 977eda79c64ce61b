// Package webhook serves what kube-apiserver calls back into: CRD conversion between
// EgressNATPolicy v1alpha1 and v1 today. It decides nothing itself; conversion lives with
// the API types.
package webhook
