// Package standin plays the node agents of nodes that run none, toward a real
// kube-apiserver: it registers each node with a subnet, renews its heartbeat Lease and
// acknowledges what the controller grants it, so tests can place floating IPs on nodes
// that exist only in the API.
//
// It only writes what the node-agent contract of apiserver/apis/networking says an agent
// writes. It never configures an address and never sends a packet.
package standin
