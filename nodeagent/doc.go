// Package nodeagent runs on every node. It turns the cluster's policies, gateways and the
// node's own pods into the node's dataplane (BPF maps and programs, an nft table, a
// routing rule and table), holds the floating IPs the controller grants the
// node, and reports the node's interfaces and held IPs on its NetworkGatewayNode.
//
// It decides nothing about which pod egresses how: that is package routing, shared with
// the aggregated API's previews. It must never hold a floating IP past its grant, and
// never let a selected pod's packet leave with another source IP.
package nodeagent
