package networking

// The contract between a node agent and the controller. Each node agent renews the Lease
// NodeNamespace/HeartbeatLeasePrefix+<node> and writes the NetworkGatewayNode
// NodeNamespace/<node>; the controller reads both to decide which nodes may hold floating
// IPs.
const (
	NodeNamespace        = "kube-system"
	HeartbeatLeasePrefix = "egressgw-node-"
)

// LeaseDurationAnnotation on a heartbeat Lease gives its duration in milliseconds, for
// grants shorter than a second or not a whole number of seconds; spec.leaseDurationSeconds
// then holds the duration rounded up. The controller prefers the annotation.
const LeaseDurationAnnotation = "egressgw.io/lease-duration-ms"

// HeartbeatLeaseName is the name of a node's heartbeat Lease.
func HeartbeatLeaseName(node string) string { return HeartbeatLeasePrefix + node }
