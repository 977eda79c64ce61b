package bpf

import (
	"errors"
	"maps"
	"net/netip"
	"testing"
	"time"

	"github.com/egressgw/egressgw/apiserver/routing"
)

// hostsFrom are n consecutive /32 prefixes from first.
func hostsFrom(first string, n int) []netip.Prefix {
	out := make([]netip.Prefix, 0, n)
	for ip := netip.MustParseAddr(first); len(out) < n; ip = ip.Next() {
		out = append(out, netip.PrefixFrom(ip, 32))
	}
	return out
}

// TestSNATFilterHoldsTheLastSet: the tries hold exactly the last set given, so a pod CIDR
// or a destination removed from the cluster is no longer SNATed; bad entries are refused.
func TestSNATFilterHoldsTheLastSet(t *testing.T) {
	d := load(t)
	ip, other := netip.MustParseAddr("198.51.100.100"), netip.MustParseAddr("198.51.100.101")
	if err := d.SetGrant(ip, 5, monotonicNow()+time.Hour); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(d.SetPodCIDRs([]netip.Prefix{netip.MustParsePrefix("198.18.1.0/24"), netip.MustParsePrefix("198.18.2.0/24")}))
	must(d.SetSNATDestinations(map[netip.Addr][]netip.Prefix{ip: {netip.MustParsePrefix("203.0.113.0/25")}, other: {netip.MustParsePrefix("8.8.8.0/24")}}))
	must(d.SetPodCIDRs([]netip.Prefix{netip.MustParsePrefix("198.18.2.0/24"), netip.MustParsePrefix("198.18.3.0/24")}))
	must(d.SetSNATDestinations(map[netip.Addr][]netip.Prefix{ip: {netip.MustParsePrefix("203.0.113.128/25")}}))
	for _, tt := range []struct {
		name, src, dst string
		want           string
	}{
		{name: "a pod CIDR kept", src: "198.18.2.10", dst: "203.0.113.130", want: "uplink_in_snat"},
		{name: "a pod CIDR added", src: "198.18.3.10", dst: "203.0.113.130", want: "uplink_in_snat"},
		{name: "a pod CIDR removed", src: "198.18.1.10", dst: "203.0.113.130", want: "uplink_in_not_pod"},
		{name: "a destination removed", src: "198.18.2.10", dst: "203.0.113.5", want: "uplink_in_not_destination"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pkt := withDst(ipv4Packet(tt.src, tt.dst, protoUDP), routing.VirtualMAC(ip))
			if got := statsDelta(t, d, func() { runFrame(t, d.objs.EgwUplinkIn, pkt, 0) }); !maps.Equal(got, one(tt.want)) {
				t.Errorf("counters moved %v, want %v", got, one(tt.want))
			}
		})
	}
	if n := len(entries[snatDstKey](t, d)); n != 1 {
		t.Errorf("egw_snat_dsts holds %d entries, want 1 (the stale ones deleted)", n)
	}
	if err := d.SetPodCIDRs([]netip.Prefix{netip.MustParsePrefix("2001:db8::/64")}); err == nil {
		t.Error("SetPodCIDRs took an IPv6 CIDR")
	}
	if err := d.SetSNATDestinations(map[netip.Addr][]netip.Prefix{netip.MustParseAddr("2001:db8::1"): {netip.MustParsePrefix("8.8.8.0/24")}}); err == nil {
		t.Error("SetSNATDestinations took an IPv6 egress IP")
	}
}

func entries[K comparable](t *testing.T, d *Dataplane) map[K]uint32 {
	t.Helper()
	m := d.objs.EgwSnatDsts
	if _, ok := any(*new(K)).(dstKey); ok {
		m = d.objs.EgwPodCidrs
	}
	out, err := iterate[K, uint32](m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSNATFilterAtCapacity: each trie at its real size. A full trie that moves to as many
// other entries makes room first, so it never wedges; a set past the limit keeps the
// entries held, refuses the rest with a CapacityError naming the map and its limit, and
// what was refused is not SNATed (fail closed), while what is held still is.
func TestSNATFilterAtCapacity(t *testing.T) {
	d := load(t)
	ip := netip.MustParseAddr("198.51.100.100")
	if err := d.SetGrant(ip, 5, monotonicNow()+time.Hour); err != nil {
		t.Fatal(err)
	}
	anyDst := map[netip.Addr][]netip.Prefix{ip: {netip.MustParsePrefix("0.0.0.0/0")}}
	tests := []struct {
		name  string
		limit int
		// set writes n entries starting at the address first.
		set func(first string, n int) error
		// held and refused are frames that an entry held, and one refused, should let in
		// and drop.
		held, refused []byte
		dropStat      string
	}{
		{
			name: "egw_pod_cidrs", limit: 16384,
			set: func(first string, n int) error {
				if err := d.SetSNATDestinations(anyDst); err != nil {
					return err
				}
				return d.SetPodCIDRs(hostsFrom(first, n))
			},
			held:     withDst(ipv4Packet("10.1.0.5", "203.0.113.5", protoUDP), routing.VirtualMAC(ip)),
			refused:  withDst(ipv4Packet("10.2.0.5", "203.0.113.5", protoUDP), routing.VirtualMAC(ip)),
			dropStat: "uplink_in_not_pod",
		},
		{
			name: "egw_snat_dsts", limit: 65536,
			set: func(first string, n int) error {
				if err := d.SetPodCIDRs([]netip.Prefix{netip.MustParsePrefix("198.18.0.0/16")}); err != nil {
					return err
				}
				return d.SetSNATDestinations(map[netip.Addr][]netip.Prefix{ip: hostsFrom(first, n)})
			},
			held:     withDst(ipv4Packet("198.18.1.10", "10.1.0.5", protoUDP), routing.VirtualMAC(ip)),
			refused:  withDst(ipv4Packet("198.18.1.10", "10.2.0.5", protoUDP), routing.VirtualMAC(ip)),
			dropStat: "uplink_in_not_destination",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := int(d.objs.EgwPodCidrs.MaxEntries()); tt.name == "egw_pod_cidrs" && got != tt.limit {
				t.Fatalf("%s holds %d, this test is for %d", tt.name, got, tt.limit)
			}
			if got := int(d.objs.EgwSnatDsts.MaxEntries()); tt.name == "egw_snat_dsts" && got != tt.limit {
				t.Fatalf("%s holds %d, this test is for %d", tt.name, got, tt.limit)
			}
			if err := tt.set("10.0.0.0", tt.limit); err != nil {
				t.Fatalf("filling %s to its limit: %v", tt.name, err)
			}
			// Another full set: old and new together are twice the trie.
			if err := tt.set("10.1.0.0", tt.limit); err != nil {
				t.Fatalf("moving a full %s to other entries: %v", tt.name, err)
			}
			// Ten more than fit: the entries held stay, the ten past them are refused.
			// hostsFrom("10.1.0.0", limit+10) ends at 10.1.0.0+limit+9, which for both
			// limits lies below 10.2.0.0: the refused frame's source or destination is
			// outside every entry either way.
			err := tt.set("10.1.0.0", tt.limit+10)
			var ce *CapacityError
			if !errors.As(err, &ce) || ce.Map != tt.name || ce.Limit != tt.limit || len(ce.Refused) != 10 {
				t.Fatalf("a set of %d = %v, want a CapacityError of %s, limit %d, 10 refused", tt.limit+10, err, tt.name, tt.limit)
			}
			if got := statsDelta(t, d, func() { runFrame(t, d.objs.EgwUplinkIn, tt.held, 0) }); !maps.Equal(got, one("uplink_in_snat")) {
				t.Errorf("a frame an entry held covers: counters moved %v, want it SNATed", got)
			}
			if got := statsDelta(t, d, func() { runFrame(t, d.objs.EgwUplinkIn, tt.refused, 0) }); !maps.Equal(got, one(tt.dropStat)) {
				t.Errorf("a frame no entry covers: counters moved %v, want %s", got, tt.dropStat)
			}
		})
	}
}
