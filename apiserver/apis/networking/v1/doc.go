// Package v1 is the current networking.gke.io API: NetworkGatewayGroup (floating IPs and
// where they are placed), EgressNATPolicy (which pod traffic leaves with which IP) and
// NetworkGatewayNode (what a node agent reports about its node).
//
// EgressNATPolicy v1 is the storage version and the conversion hub for v1alpha1.
//
// +kubebuilder:object:generate=true
// +groupName=networking.gke.io
package v1
