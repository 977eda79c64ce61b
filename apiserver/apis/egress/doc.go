// Package egress is the home of the egress.egressgw.io API: views that the aggregated API
// server computes from the cluster's state (which IP each pod's traffic leaves with, and
// which pods each policy selects) and a review-style preview of one packet's path. Nothing
// here is stored; nothing here may import a component.
package egress

// GroupName is the API group the aggregated API server serves. It is not networking.gke.io:
// that group belongs to the custom resources users write.
const GroupName = "egress.egressgw.io"
