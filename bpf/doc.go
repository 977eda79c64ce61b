// Package bpf is the egressgw dataplane in the kernel: the eBPF programs that classify
// packets leaving local pods, send steered ones, unencapsulated, to the virtual MAC of
// their egress IP on the node network, and let the node holding that IP SNAT them only
// while its grant is valid; and the loader
// that programs their maps from a routing.Table and keeps their links pinned across
// agent restarts.
//
// It decides nothing about policies: routing.Table says which pod goes where. It must
// never, at any instant, steer a packet to an egress IP the table does not give it.
package bpf
