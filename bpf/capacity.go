package bpf

import (
	"net/netip"

	"github.com/egressgw/egressgw/apiserver/routing"
)

// CapacityError says that a map is full: the entries past its limit were refused, and
// fail closed, while the entries already there stay. It is routing's, which refuses
// what the id spaces cannot number, so that the agent reports both the same way.
type CapacityError = routing.CapacityError

// refuseAddrs names refused addresses for a CapacityError, sorted.
func refuseAddrs(ips []netip.Addr) []string { return routing.RefusedAddrs(ips) }
