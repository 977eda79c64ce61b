package routing

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// OnSegment says whether one of subnets, those of a node's interfaces that may hold
// floating IPs, contains egressIP: only then does the node's dataplane send a steered
// packet to the egress IP's virtual MAC, unencapsulated. It drops a steered packet for
// any other egress IP: routed egress from another L2 segment is not built yet.
func OnSegment(subnets []netip.Prefix, egressIP netip.Addr) bool {
	return slices.ContainsFunc(subnets, func(p netip.Prefix) bool { return p.Contains(egressIP) })
}

// OffSegment is why a pod on node cannot egress through egressIP, given the interface
// subnets the node's agent reports, or "" if it can. No subnets means the agent has not
// reported them (yet): nothing is claimed then.
func OffSegment(node string, subnets []netip.Prefix, egressIP netip.Addr) string {
	if len(subnets) == 0 || OnSegment(subnets, egressIP) {
		return ""
	}
	s := make([]string, len(subnets))
	for i, p := range subnets {
		s[i] = p.String()
	}
	have := strings.Join(s, ", ")
	return fmt.Sprintf("node %s has no interface on a subnet of the egress IP %s (its agent reports %s), so it drops the steered packets rather than let them leave with another source; egress through a gateway on another L2 segment is not supported yet",
		node, egressIP, have)
}
