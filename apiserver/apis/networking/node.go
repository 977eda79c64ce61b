package networking

// NodeNamespace holds what each node agent writes: its NetworkGatewayNode (named for the
// node) and its heartbeat Lease (package heartbeat names it).
const NodeNamespace = "kube-system"
