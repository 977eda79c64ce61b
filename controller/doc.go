// Package controller places floating IPs on nodes, fails them over when a node's agent
// stops renewing its heartbeat Lease, and writes what it decided where users read it: the
// gateways' status.nodes and status.floatingIPs, the policies' egress IP and gateway node,
// conditions, and events. Decisions are made by package placement (where IPs go), package
// liveness (which nodes are Up) and package routing (what a policy resolves to); this
// package only gathers their inputs from informer caches and writes their results. A pass
// is gather (gather.go: reads, and liveness fed and read once), decide (decide.go: pure,
// from the inputs to every write and event), write (write.go: grants before status).
//
// It never moves an IP while the API server is unreachable: without reads it makes no
// decision at all.
package controller
