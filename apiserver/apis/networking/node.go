package networking

// The contract between a node agent and the controller. Each node agent renews the Lease
// NodeNamespace/HeartbeatLeasePrefix+<node> and writes the NetworkGatewayNode
// NodeNamespace/<node>; the controller reads both to decide which nodes may hold floating
// IPs.
const (
	NodeNamespace        = "kube-system"
	HeartbeatLeasePrefix = "egressgw-node-"
)

// HeartbeatLeaseName is the name of a node's heartbeat Lease.
func HeartbeatLeaseName(node string) string { return HeartbeatLeasePrefix + node }
