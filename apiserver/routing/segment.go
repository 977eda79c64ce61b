package routing

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
)

// Path is how a node's steered packets reach the node that holds their egress IP.
type Path string

const (
	// OnSegmentPath: the node has an interface on a subnet of the egress IP, and sends a
	// steered packet as the pod sent it, to the IP's virtual MAC.
	OnSegmentPath Path = "OnSegment"
	// RoutedPath: the egress IP is on none of the node's subnets; the node wraps the
	// packet in an IPv4 header (IPv4-in-IPv4) to the egress IP, and the routed node
	// network takes it to the IP's segment, where its holder unwraps and SNATs it.
	RoutedPath Path = "Routed"
	// NoPath: neither; the node drops the steered packets.
	NoPath Path = "None"
)

// RoutedOverhead is what the routed path adds to each packet: the outer IPv4 header.
const RoutedOverhead = 20

// Overhead is the bytes the path adds to each packet.
func (p Path) Overhead() int {
	if p == RoutedPath {
		return RoutedOverhead
	}
	return 0
}

// NodeReach is what a node's agent reports about reaching egress IPs: its interface
// subnets, and whether it has a router to reach other subnets through.
type NodeReach struct {
	// Subnets are the interface subnets (where it can hold and reach egress IPs at L2);
	// nil if the agent has not reported.
	Subnets []netip.Prefix
	// Routed says that the node has a router (a next hop of one of its routes): egress
	// IPs on none of its subnets are reached through it. The node's own kernel route to
	// each IP is what its agent goes by; its EgressReachable condition says where that
	// differs.
	Routed bool
}

// ReachOf is what a node's report says about reaching egress IPs.
func ReachOf(s *v1.NetworkGatewayNodeStatus) NodeReach {
	r := NodeReach{Subnets: ReportAddressesOf(s).Interfaces}
	for _, i := range s.Interfaces {
		r.Routed = r.Routed || len(i.Routers) > 0
	}
	return r
}

// OnSegment says whether one of subnets, those of a node's interfaces that may hold
// floating IPs, contains egressIP: only then does the node's dataplane send a steered
// packet to the egress IP's virtual MAC, unencapsulated.
func OnSegment(subnets []netip.Prefix, egressIP netip.Addr) bool {
	return slices.ContainsFunc(subnets, func(p netip.Prefix) bool { return p.Contains(egressIP) })
}

// PathTo is how a node that reports reach sends packets steered to egressIP. With no
// subnets reported, nothing is claimed: OnSegmentPath.
func (r NodeReach) PathTo(egressIP netip.Addr) Path {
	switch {
	case len(r.Subnets) == 0 || OnSegment(r.Subnets, egressIP):
		return OnSegmentPath
	case r.Routed:
		return RoutedPath
	}
	return NoPath
}

// NoRoute says that node, with interfaces on subnets, has no way to egressIP: no
// interface on its subnet and no route to it.
func NoRoute(node string, subnets []netip.Prefix, egressIP netip.Addr) string {
	s := make([]string, len(subnets))
	for i, p := range subnets {
		s[i] = p.String()
	}
	has := "its agent reports " + strings.Join(s, ", ")
	if len(s) == 0 {
		has = "its agent reports none"
	}
	return fmt.Sprintf("node %s has no interface on a subnet of the egress IP %s (%s) and no route to it, so it drops the steered packets rather than let them leave with another source; give the node a route to %s",
		node, egressIP, has, egressIP)
}

// Redirected says why a pod on node, whose interface carries another BPF program, has its
// selected traffic dropped.
func Redirected(node string) string {
	return fmt.Sprintf("node %s's agent found another BPF program on the pod's interface, which could send its packets past the node's routing and the steering, so it drops them; see the PodsCovered condition of NetworkGatewayNode %s for the program", node, node)
}
