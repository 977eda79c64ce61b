// Package netpolicy decides whether Kubernetes NetworkPolicy lets a pod send one packet:
// the egress half of the API's semantics (policyTypes, podSelector, egress rules with
// ipBlock, namespace and pod peers, ports and port ranges). The packet-path preview asks
// it first, because a packet NetworkPolicy drops never reaches an egress gateway.
//
// It is pure: no I/O, no caches. It never guesses: what it cannot evaluate (a named port
// without a destination pod, a rule with ports for a packet without one) does not match,
// and the verdict says so.
package netpolicy
