// Package heartbeat is the contract between node agents and the controller about which
// nodes are alive, shared by both: the heartbeat Lease each agent renews (lease.go), and
// the direct UDP channel to the controller's leader (wire.go).
//
// Over the direct channel each agent sends a small datagram every 100 ms or so, and the
// leader answers. An answer that vouches for the agent's grants extends them, measured
// from when the agent sent the datagram, exactly as a renewed heartbeat Lease does. The
// API server sees none of it: a node's heartbeat Lease is then written rarely, and traffic
// keeps its gateways while the API server is away.
//
// It only encodes and names; it decides nothing about liveness (package liveness of the
// controller does) and does no I/O.
package heartbeat
