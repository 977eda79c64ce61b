package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"
)

// What a gateway SNATs: egw_uplink_in marks a frame steered to a held egress IP's virtual
// MAC only if its source is in egw_pod_cidrs and its destination is in egw_snat_dsts
// under that egress IP. Any host on the node segment can address a frame to a virtual
// MAC; these two tries are what keeps the gateway from relaying its traffic as the egress
// IP. Both fail closed: an entry missing, or refused for want of room, drops frames.

// SetPodCIDRs makes egw_pod_cidrs hold exactly prefixes: the pod CIDRs of every node of
// the cluster, the only sources a gateway SNATs. Stale entries go first; if prefixes do
// not fit, the ones the trie holds keep their entries, the lowest of the others fill the
// room left, and the rest are refused (their pods' steered frames drop) with a
// *CapacityError.
func (d *Dataplane) SetPodCIDRs(prefixes []netip.Prefix) error {
	want := make(map[dstKey]bool, len(prefixes))
	for _, p := range prefixes {
		if !p.Addr().Is4() {
			return fmt.Errorf("pod CIDR %s is not IPv4: the dataplane steers IPv4 only", p)
		}
		want[dstKey{Prefixlen: uint32(p.Bits()), Dst: p.Masked().Addr().As4()}] = true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	m := d.objs.EgwPodCidrs
	refused, err := setTrie(m, want, func(a, b dstKey) int { return comparePrefixes(a.prefix(), b.prefix()) })
	if err != nil {
		return fmt.Errorf("writing the pod CIDRs to %s: %w", egwMapEgwPodCidrs, err)
	}
	if len(refused) > 0 {
		names := make([]string, len(refused))
		for i, k := range refused {
			names[i] = k.prefix().String()
		}
		return &CapacityError{Map: egwMapEgwPodCidrs, Limit: int(m.MaxEntries()), What: "pod CIDRs (every node's)", Refused: names}
	}
	return nil
}

// SetSNATDestinations makes egw_snat_dsts hold exactly dsts: for every egress IP, the
// destinations of the policies that route to it (routing.SNATDestinations), the only
// destinations a gateway SNATs to that IP. Stale entries go first; if dsts do not fit,
// the entries the trie holds stay, the lowest of the others fill the room left, and the
// rest are refused (their steered frames drop) with a *CapacityError.
func (d *Dataplane) SetSNATDestinations(dsts map[netip.Addr][]netip.Prefix) error {
	want := map[snatDstKey]bool{}
	for ip, prefixes := range dsts {
		egress, err := toIPv4(ip)
		if err != nil {
			return fmt.Errorf("the destinations of egress IP %s: %w", ip, err)
		}
		for _, p := range prefixes {
			if !p.Addr().Is4() {
				return fmt.Errorf("destination %s of egress IP %s is not IPv4", p, ip)
			}
			want[snatDstKey{Prefixlen: 32 + uint32(p.Bits()), EgressIP: egress, Dst: p.Masked().Addr().As4()}] = true
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	m := d.objs.EgwSnatDsts
	refused, err := setTrie(m, want, compareSNATDst)
	if err != nil {
		return fmt.Errorf("writing the SNAT destinations to %s: %w", egwMapEgwSnatDsts, err)
	}
	if len(refused) > 0 {
		names := make([]string, len(refused))
		for i, k := range refused {
			names[i] = k.String()
		}
		return &CapacityError{Map: egwMapEgwSnatDsts, Limit: int(m.MaxEntries()), What: "policy destinations (egress IP and prefix)", Refused: names}
	}
	return nil
}

// SetNodes makes egw_nodes hold exactly addrs: the addresses of the cluster's nodes, the
// only outer sources a gateway takes routed (IPv4-in-IPv4) packets from. Stale entries
// go first, and an address that stays keeps its entry; the lowest addresses fill the
// room, and those that do not fit are refused (their nodes' routed packets drop) with a *CapacityError.
func (d *Dataplane) SetNodes(addrs []netip.Addr) error {
	want := make(map[ipv4]uint8, len(addrs))
	for _, a := range addrs {
		ip, err := toIPv4(a)
		if err != nil {
			return fmt.Errorf("node address: %w", err)
		}
		want[ip] = 1
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	refused, err := setByIP(d.objs.EgwNodes, want)
	if err != nil {
		return fmt.Errorf("writing the node addresses: %w", err)
	}
	if len(refused) > 0 {
		return &CapacityError{Map: egwMapEgwNodes, Limit: int(d.objs.EgwNodes.MaxEntries()), What: "node addresses", Refused: refuseAddrs(refused)}
	}
	return nil
}

func (k snatDstKey) String() string {
	return fmt.Sprintf("%s to %s", k.EgressIP.addr(), netip.PrefixFrom(k.Dst.addr(), int(k.Prefixlen)-32))
}

func compareSNATDst(a, b snatDstKey) int {
	if c := a.EgressIP.addr().Compare(b.EgressIP.addr()); c != 0 {
		return c
	}
	return comparePrefixes(netip.PrefixFrom(a.Dst.addr(), int(a.Prefixlen)-32), netip.PrefixFrom(b.Dst.addr(), int(b.Prefixlen)-32))
}

func comparePrefixes(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// setTrie makes the trie m hold exactly the keys of want, each with the value 1. Stale
// keys are deleted first, so that old and new entries together never need more room
// than m has; a key that stays keeps its entry, and never misses a packet. What does not
// fit is refused, lowest first by compare filling the room, and returned sorted.
func setTrie[K comparable](m *ebpf.Map, want map[K]bool, compare func(a, b K) int) ([]K, error) {
	have, err := iterate[K, uint32](m) // LPM tries have no batch operations
	if err != nil {
		return nil, err
	}
	for k := range have {
		if !want[k] {
			if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return nil, fmt.Errorf("deleting a stale entry: %w", err)
			}
			delete(have, k)
		}
	}
	keys := make([]K, 0, len(want))
	for k := range want {
		if _, ok := have[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, compare)
	room := int(m.MaxEntries()) - len(have)
	if room < 0 {
		room = 0
	}
	var refused []K
	for _, k := range keys {
		if room == 0 {
			refused = append(refused, k)
			continue
		}
		if err := m.Update(k, uint32(1), ebpf.UpdateAny); err != nil {
			return nil, fmt.Errorf("writing an entry (the trie holds %d): %w", m.MaxEntries(), err)
		}
		room--
	}
	return refused, nil
}
