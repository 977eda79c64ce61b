// Package v1alpha1 is the legacy networking.gke.io API: AnthosNetworkGateway,
// AnthosNetworkGatewayNode, and EgressNATPolicy with egressSourceIP. It keeps working.
// The gateway and node kinds have the same shape as their v1 counterparts, and reuse their
// spec and status types. EgressNATPolicy is served at v1alpha1 and v1 from one CRD and
// converts losslessly to and from v1, its storage version.
//
// +kubebuilder:object:generate=true
// +groupName=networking.gke.io
package v1alpha1
