package placement

import (
	"cmp"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
)

// Random clusters for the property tests. Sizes are small so that collisions (shared
// subnets, shared IPs, equal ages, ties in load) are common: that is where bugs hide.

// overlapping subnets: /23 holds both /24s, and the /25 sits inside the first /24.
var clusterSubnets = []string{"10.0.0.0/24", "10.0.1.0/24", "10.0.0.0/23", "10.0.0.128/25", "192.168.1.0/24"}

// clusterIPs are the floating IPs gateways draw from; 198.51.100.50 is on no subnet.
var clusterIPs = []string{
	"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.130", "10.0.0.131", "10.0.0.132",
	"10.0.1.1", "10.0.1.2", "10.0.1.3", "192.168.1.100", "192.168.1.101", "192.168.1.102",
	"198.51.100.50",
}

// randomNode is a node with up to two subnets, given with random host bits as agents do.
func randomNode(r *rand.Rand, name string, subnets []string) Node {
	n := Node{
		Name:         name,
		ControlPlane: r.IntN(4) == 0,
		Up:           r.IntN(6) != 0,
		Cordoned:     r.IntN(8) == 0,
	}
	for range r.IntN(3) {
		p := netip.MustParsePrefix(subnets[r.IntN(len(subnets))])
		host := p.Addr().As4()
		host[3] |= byte(r.IntN(min(256, 1<<(32-p.Bits()))))
		n.Subnets = append(n.Subnets, netip.PrefixFrom(netip.AddrFrom4(host), p.Bits()))
	}
	if r.IntN(8) == 0 {
		// Its Node object says it has an address that a gateway may list.
		n.Addresses = append(n.Addresses, addr(clusterIPs[r.IntN(len(clusterIPs))]))
	}
	return n
}

// randomCluster has up to 10 nodes, up to 6 gateways (IDs may repeat, IPs may be shared)
// and a Current (and previous Standbys) that point some IPs at real nodes, some at a deleted
// one, and some that no gateway lists.
func randomCluster(r *rand.Rand) Input {
	var in Input
	for i := range r.IntN(11) {
		in.Nodes = append(in.Nodes, randomNode(r, fmt.Sprintf("node%d", i), clusterSubnets))
	}
	for range r.IntN(7) {
		g := ngg(fmt.Sprintf("gw%d", r.IntN(5)), r.IntN(3))
		if r.IntN(4) == 0 {
			g.ID.Kind = KindAnthosNetworkGateway
		}
		for range 1 + r.IntN(4) {
			g.FloatingIPs = append(g.FloatingIPs, addr(clusterIPs[r.IntN(len(clusterIPs))]))
		}
		in.Gateways = append(in.Gateways, g)
	}
	in.Current = make(map[netip.Addr]string)
	in.Standbys = make(map[netip.Addr]string)
	for _, ip := range clusterIPs {
		if r.IntN(2) == 0 {
			in.Current[addr(ip)] = fmt.Sprintf("node%d", r.IntN(12)) // node10 and node11 never exist
		}
		if r.IntN(2) == 0 {
			in.Standbys[addr(ip)] = fmt.Sprintf("node%d", r.IntN(12)) // the holder, at times
		}
	}
	return in
}

// flatCluster has disjoint subnets, one per node, and nothing placed yet: the setting in
// which placement from scratch must be perfectly balanced.
func flatCluster(r *rand.Rand) Input {
	subnets := []string{"10.0.0.0/24", "10.0.1.0/24", "192.168.1.0/24"}
	var in Input
	for i := range 1 + r.IntN(12) {
		n := randomNode(r, fmt.Sprintf("node%d", i), subnets)
		n.Subnets = []netip.Prefix{netip.MustParsePrefix(subnets[r.IntN(len(subnets))])}
		in.Nodes = append(in.Nodes, n)
	}
	for i := range r.IntN(8) {
		g := ngg(fmt.Sprintf("gw%d", i), r.IntN(3))
		for range 1 + r.IntN(5) {
			g.FloatingIPs = append(g.FloatingIPs, addr(clusterIPs[r.IntN(len(clusterIPs)-1)]))
		}
		in.Gateways = append(in.Gateways, g)
	}
	return in
}

// shuffled is in with every slice whose order carries no meaning shuffled. The order of a
// gateway's FloatingIPs carries meaning, so it stays.
func shuffled(r *rand.Rand, in Input) Input {
	out := Input{Gateways: slices.Clone(in.Gateways), Nodes: slices.Clone(in.Nodes), Current: maps.Clone(in.Current),
		Standbys: maps.Clone(in.Standbys)}
	r.Shuffle(len(out.Gateways), func(i, j int) { out.Gateways[i], out.Gateways[j] = out.Gateways[j], out.Gateways[i] })
	r.Shuffle(len(out.Nodes), func(i, j int) { out.Nodes[i], out.Nodes[j] = out.Nodes[j], out.Nodes[i] })
	for i := range out.Nodes {
		s := slices.Clone(out.Nodes[i].Subnets)
		r.Shuffle(len(s), func(a, b int) { s[a], s[b] = s[b], s[a] })
		out.Nodes[i].Subnets = s
	}
	return out
}

// The rest is a slow, obvious restatement of the rules, written without the package's
// index, heap or claim code, to check Place against.

// oracle answers questions about one Input by brute force.
type oracle struct {
	in    Input
	nodes map[string]Node // the generators never repeat a node name
	order []netip.Addr    // listed IPs, each once, in the order the rules place them
	// listers maps each listed IP to the gateways listing it, oldest first.
	listers map[netip.Addr][]GatewayID
}

func newOracle(in Input) *oracle {
	o := &oracle{in: in, nodes: make(map[string]Node), listers: make(map[netip.Addr][]GatewayID)}
	for _, n := range in.Nodes {
		o.nodes[n.Name] = n
	}
	gateways := slices.Clone(in.Gateways)
	slices.SortFunc(gateways, func(a, b Gateway) int {
		return cmp.Or(a.Created.Compare(b.Created), strings.Compare(a.ID.Namespace, b.ID.Namespace),
			strings.Compare(a.ID.Name, b.ID.Name), strings.Compare(a.ID.Kind, b.ID.Kind),
			slices.CompareFunc(a.FloatingIPs, b.FloatingIPs, netip.Addr.Compare))
	})
	seen := make(map[GatewayID]bool)
	for _, g := range gateways {
		if seen[g.ID] {
			continue // a repeated ID: the oldest entry stands for it
		}
		seen[g.ID] = true
		for _, ip := range g.FloatingIPs {
			l := o.listers[ip]
			if len(l) == 0 {
				o.order = append(o.order, ip)
			}
			if !slices.Contains(l, g.ID) {
				o.listers[ip] = append(l, g.ID)
			}
		}
	}
	return o
}

// canHold says whether the node called name is Up, uncordoned and on ip's subnet, and ip
// is no node's own address.
func (o *oracle) canHold(name string, ip netip.Addr) bool {
	n, ok := o.nodes[name]
	return ok && n.Up && !n.Cordoned && slices.ContainsFunc(n.Subnets, func(p netip.Prefix) bool { return p.Contains(ip) }) &&
		!o.nodeAddress(ip)
}

// nodeAddress says whether ip is an address of some node: of its Node, or the host address
// of a subnet it reports.
func (o *oracle) nodeAddress(ip netip.Addr) bool {
	for _, n := range o.in.Nodes {
		if slices.Contains(n.Addresses, ip) {
			return true
		}
		for _, p := range n.Subnets {
			if p.Addr() == ip && (p.Bits() >= 31 || p != p.Masked()) {
				return true
			}
		}
	}
	return false
}

// candidates are the nodes that can hold ip, by name.
func (o *oracle) candidates(ip netip.Addr) []Node {
	var out []Node
	for _, n := range o.in.Nodes {
		if o.canHold(n.Name, ip) {
			out = append(out, n)
		}
	}
	slices.SortFunc(out, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// sticky says whether ip's current node can keep it, which means it must not move.
func (o *oracle) sticky(ip netip.Addr) bool {
	return o.canHold(o.in.Current[ip], ip)
}

// toStandby says whether ip, which must move, goes to its previous standby: one that can
// take it and is not the node it leaves.
func (o *oracle) toStandby(ip netip.Addr) bool {
	s := o.in.Standbys[ip]
	return !o.sticky(ip) && s != o.in.Current[ip] && o.canHold(s, ip)
}
