package routing

import (
	"fmt"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
)

// The cluster's own address sets, learned from the Nodes and the agents' reports, so that
// an operator lists only what no object says (the service CIDRs): the never-steered set,
// and the sources a gateway SNATs from.

// MinNodeSubnetBits is the shortest reported interface subnet the never-steered set takes,
// as placement takes no shorter one: a node that says it is on 0.0.0.0/0 would make every
// destination in-cluster, and so every policy moot.
const MinNodeSubnetBits = 8

// MinServedBits is the shortest served pod prefix a gateway accepts from a node's report:
// a compromised node must not be able to open the relay to 0.0.0.0/0.
const MinServedBits = 16

// NodeAddresses are what the cluster's address sets take from one node: the Node's half
// (NodeAddressesOf) and its agent's report's half (ReportAddressesOf).
type NodeAddresses struct {
	// InternalIPs are the Node's IPv4 InternalIP addresses.
	InternalIPs []netip.Addr
	// PodCIDRs are the Node's IPv4 spec.podCIDRs.
	PodCIDRs []netip.Prefix
	// Interfaces are the IPv4 addresses its agent reports on its interfaces, with their
	// prefix (198.51.100.11/24); those shorter than MinNodeSubnetBits are left out.
	Interfaces []netip.Prefix
	// Served are the pod addresses its agent reports outside PodCIDRs, as it wrote them.
	Served []netip.Prefix
}

// NodeAddressesOf is the Node's half of its NodeAddresses.
func NodeAddressesOf(n *corev1.Node) NodeAddresses {
	a := NodeAddresses{PodCIDRs: NodePodCIDRs(n)}
	for _, addr := range n.Status.Addresses {
		if ip, err := netip.ParseAddr(addr.Address); err == nil && ip.Is4() && addr.Type == corev1.NodeInternalIP {
			a.InternalIPs = append(a.InternalIPs, ip)
		}
	}
	return a
}

// ReportAddressesOf is the report's half of a node's NodeAddresses.
func ReportAddressesOf(s *v1.NetworkGatewayNodeStatus) NodeAddresses {
	var a NodeAddresses
	for _, i := range s.Interfaces {
		for _, raw := range i.Subnets {
			if p, err := netip.ParsePrefix(raw); err == nil && p.Addr().Is4() && p.Bits() >= MinNodeSubnetBits {
				a.Interfaces = append(a.Interfaces, p)
			}
		}
	}
	for _, raw := range s.ServedPodAddresses {
		if p, err := netip.ParsePrefix(raw); err == nil && p.Addr().Is4() {
			a.Served = append(a.Served, p.Masked())
		}
	}
	return a
}

// ClusterAddresses are the cluster's address sets' inputs: the configured CIDRs
// (--cluster-cidrs: the service CIDRs, and whatever else the operator lists) and every
// node's addresses.
type ClusterAddresses struct {
	Configured []netip.Prefix
	Nodes      []NodeAddresses
}

// NeverSteered are the destinations inside the cluster, which no policy steers: the
// configured CIDRs, every node's pod CIDRs, its InternalIPs (/32) and the subnets its
// interfaces are on. Sorted, each once.
func (c ClusterAddresses) NeverSteered() []netip.Prefix {
	out := slices.Clone(c.Configured)
	for _, n := range c.Nodes {
		out = append(out, n.PodCIDRs...)
		for _, ip := range n.InternalIPs {
			out = append(out, netip.PrefixFrom(ip, 32))
		}
		for _, i := range n.Interfaces {
			out = append(out, i.Masked())
		}
	}
	return SortPrefixes(out)
}

// PodSources are the sources a gateway SNATs from: every node's pod CIDRs, and the
// served pod addresses the nodes report that CheckServed accepts. Sorted, each once.
func (c ClusterAddresses) PodSources() []netip.Prefix {
	var out []netip.Prefix
	for _, n := range c.Nodes {
		out = append(out, n.PodCIDRs...)
		for _, p := range n.Served {
			if c.CheckServed(p) == nil {
				out = append(out, p)
			}
		}
	}
	return SortPrefixes(out)
}

// CheckServed says why a gateway refuses p as a node's served pod addresses, or nil if it
// accepts them: a prefix shorter than MinServedBits, or one that contains a node's address
// or a configured CIDR, is no pod's.
func (c ClusterAddresses) CheckServed(p netip.Prefix) error {
	if p.Bits() < MinServedBits {
		return fmt.Errorf("%s is shorter than /%d", p, MinServedBits)
	}
	for _, n := range c.Nodes {
		for _, ip := range n.InternalIPs {
			if p.Contains(ip) {
				return fmt.Errorf("%s contains the node address %s", p, ip)
			}
		}
		for _, i := range n.Interfaces {
			if p.Contains(i.Addr()) {
				return fmt.Errorf("%s contains the node address %s", p, i.Addr())
			}
		}
	}
	for _, cc := range c.Configured {
		if p.Bits() <= cc.Bits() && p.Contains(cc.Addr()) {
			return fmt.Errorf("%s contains the cluster CIDR %s", p, cc)
		}
	}
	return nil
}

// NodeIPs are every node's own addresses, sorted, each once: its InternalIPs and the
// addresses of the interfaces its agent reports. Routed (IPv4-in-IPv4) packets come from
// these; a gateway takes them from no other source.
func (c ClusterAddresses) NodeIPs() []netip.Addr {
	var out []netip.Addr
	for _, n := range c.Nodes {
		out = append(out, n.InternalIPs...)
		for _, p := range n.Interfaces {
			out = append(out, p.Addr())
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}
