// Package bpf is the egressgw dataplane in the kernel: the eBPF programs that classify
// packets leaving local pods, carry steered ones through egw0 to the node holding their
// egress IP, and let that node SNAT them only while its grant is valid; and the loader
// that programs their maps from an egress.Table and keeps their links pinned across
// agent restarts.
//
// It decides nothing about policies: egress.Table says which pod goes where. It must
// never, at any instant, steer a packet to an egress IP the table does not give it.
package bpf
