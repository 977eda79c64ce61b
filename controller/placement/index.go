package placement

import (
	"net/netip"
	"slices"
	"strings"
)

// node is a Node after normalisation, with the number of IPs placed on it so far.
type node struct {
	name                       string
	subnets                    []netip.Prefix // masked, IPv4, sorted, unique
	controlPlane, up, cordoned bool
	load                       int32
}

// eligible reports whether the node may hold ip: Up, not cordoned, and on ip's subnet.
func (n *node) eligible(ip netip.Addr) bool {
	return n.up && !n.cordoned && n.contains(ip)
}

func (n *node) contains(ip netip.Addr) bool {
	for _, p := range n.subnets {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// index finds the nodes whose subnets contain an IP without looking at every node: nodes are
// grouped by subnet, and an IP's subnets are found by masking it to each prefix length in
// use, so a lookup costs at most 33 map reads however many nodes there are.
type index struct {
	nodes    []node // sorted by name, so a node's position is also its tie-break rank
	byName   map[string]int32
	byPrefix map[netip.Prefix][]int32 // masked subnet -> nodes that have it, in name order
	lens     []int                    // prefix lengths in use, longest first
	pools    map[poolKey]*pool
	// addresses maps every node's own address (its Node's, and the host address of each
	// reported subnet) to the first node by name that has it.
	addresses map[netip.Addr]string
	// routers maps every reported router to the first node by name that reports it.
	routers map[netip.Addr]string
}

// poolKey identifies the set of subnets containing an IP. Those subnets are nested, so the
// longest one and the set of lengths name them all: IPs with equal keys share a pool.
type poolKey struct {
	longest netip.Prefix
	lens    uint64 // bit l set: a subnet of length l contains the IP
}

// pool is the nodes that can hold the IPs of one poolKey.
type pool struct {
	members []int32 // every node with a subnet containing the IPs, in name order
	up      int     // how many members are Up
	heap    heap    // the Up, uncordoned members, best candidate on top
}

var emptyPool = &pool{}

func newIndex(nodes []Node) *index {
	sorted := slices.SortedFunc(slices.Values(nodes), func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	ix := &index{
		nodes:    make([]node, 0, len(sorted)),
		byName:   make(map[string]int32, len(sorted)),
		byPrefix: make(map[netip.Prefix][]int32),
		pools:    make(map[poolKey]*pool),
	}
	for _, n := range sorted {
		if n.Name == "" {
			continue // an empty name means "no node" in Current; such an entry is unusable
		}
		if last := len(ix.nodes) - 1; last >= 0 && ix.nodes[last].name == n.Name {
			// A repeated name is merged so that no entry's position in the input matters,
			// and cautiously: a node reported Down or cordoned anywhere is treated so.
			m := &ix.nodes[last]
			m.subnets = append(m.subnets, n.Subnets...)
			m.up = m.up && n.Up
			m.cordoned = m.cordoned || n.Cordoned
			m.controlPlane = m.controlPlane || n.ControlPlane
			continue
		}
		ix.nodes = append(ix.nodes, node{
			name:         n.Name,
			subnets:      slices.Clone(n.Subnets),
			controlPlane: n.ControlPlane,
			up:           n.Up,
			cordoned:     n.Cordoned,
		})
	}
	ix.addresses = nodeAddresses(sorted)
	ix.routers = map[netip.Addr]string{}
	for _, n := range sorted {
		for _, ip := range n.Routers {
			if _, ok := ix.routers[ip]; !ok {
				ix.routers[ip] = n.Name
			}
		}
	}
	var lens uint64
	for i := range ix.nodes {
		n := &ix.nodes[i]
		ix.byName[n.name] = int32(i)
		n.subnets = ipv4Subnets(n.subnets)
		for _, p := range n.subnets {
			ix.byPrefix[p] = append(ix.byPrefix[p], int32(i))
			lens |= 1 << p.Bits()
		}
	}
	for l := 32; l >= 0; l-- {
		if lens&(1<<l) != 0 {
			ix.lens = append(ix.lens, l)
		}
	}
	return ix
}

// nodeAddresses maps each node's own IPv4 addresses to the node, the first by name. A
// subnet's address is the node's when it has host bits (192.168.1.11/24), or is a /32 or
// /31; 192.168.1.0/24 names only the subnet.
func nodeAddresses(sorted []Node) map[netip.Addr]string {
	out := map[netip.Addr]string{}
	add := func(ip netip.Addr, name string) {
		if _, ok := out[ip]; !ok && ip.Is4() && name != "" {
			out[ip] = name
		}
	}
	for _, n := range sorted {
		for _, ip := range n.Addresses {
			add(ip.Unmap(), n.Name)
		}
		for _, p := range n.Subnets {
			if p.IsValid() && (p.Bits() >= 31 || p.Addr() != p.Masked().Addr()) {
				add(p.Addr(), n.Name)
			}
		}
	}
	return out
}

// MinSubnetBits is the shortest prefix placement takes from a node's report. A node that
// says it is on 0.0.0.0/0 (or on a /3) is not on an L2 segment that size: were placement to
// believe it, that node would be eligible for every floating IP of every gateway, and one
// bad or compromised report would draw them all.
const MinSubnetBits = 8

// ipv4Subnets masks, sorts and de-duplicates the IPv4 prefixes of ps, in place, leaving out
// those shorter than MinSubnetBits.
func ipv4Subnets(ps []netip.Prefix) []netip.Prefix {
	out := ps[:0]
	for _, p := range ps {
		if p.IsValid() && p.Addr().Is4() && p.Bits() >= MinSubnetBits {
			out = append(out, p.Masked())
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(out)
}

// node returns the position of the node called name, or -1.
func (ix *index) node(name string) int32 {
	if i, ok := ix.byName[name]; ok {
		return i
	}
	return -1
}

// pool returns the nodes that can hold ip, building and caching the pool on first use.
func (ix *index) pool(ip netip.Addr) *pool {
	if !ip.Is4() {
		return emptyPool
	}
	var key poolKey
	for _, l := range ix.lens {
		p := netip.PrefixFrom(ip, l).Masked()
		if _, ok := ix.byPrefix[p]; ok {
			if key.lens == 0 {
				key.longest = p
			}
			key.lens |= 1 << l
		}
	}
	if key.lens == 0 {
		return emptyPool
	}
	if pl, ok := ix.pools[key]; ok {
		return pl
	}
	pl := &pool{}
	for _, l := range ix.lens {
		if key.lens&(1<<l) != 0 {
			pl.members = append(pl.members, ix.byPrefix[netip.PrefixFrom(ip, l).Masked()]...)
		}
	}
	slices.Sort(pl.members)
	pl.members = slices.Compact(pl.members)
	for _, i := range pl.members {
		n := &ix.nodes[i]
		if n.up {
			pl.up++
		}
		if n.up && !n.cordoned {
			pl.heap = append(pl.heap, entry{idx: i, load: n.load, controlPlane: n.controlPlane})
		}
	}
	pl.heap.init()
	ix.pools[key] = pl
	return pl
}

// pick places one more IP on the best node of pl and returns it, or -1 if pl has none.
func (ix *index) pick(pl *pool) int32 {
	h := pl.heap
	if len(h) == 0 {
		return -1
	}
	// Loads only grow, and a node's load may have grown through another pool since its
	// entry here was written. A stale entry is never worse than it should be, so fixing
	// the top until it is current finds the true best without rebuilding the heap.
	for h[0].load != ix.nodes[h[0].idx].load {
		h[0].load = ix.nodes[h[0].idx].load
		h.down(0)
	}
	i := h[0].idx
	ix.nodes[i].load++
	h[0].load++
	h.down(0)
	return i
}
