// Package networking is the home of the networking.gke.io API: the custom resources users
// write (NetworkGatewayGroup, EgressNATPolicy and their v1alpha1 ancestors) and the
// per-node NetworkGatewayNode that node agents report. Every component imports these types
// from here; nothing here may import a component.
package networking

// GroupName is the API group of every custom resource in this project.
const GroupName = "networking.gke.io"
