package bpf

import (
	"bytes"
	"encoding/binary"
	"maps"
	"net/netip"
	"testing"
	"time"

	"github.com/egressgw/egressgw/apiserver/routing"
)

// TestFromPodRouted: a pod steered to an egress IP on none of the node's subnets goes the
// routed way if the node has a route to the IP, and is steered (for egw_uplink_out to
// drop) if it has none; an IP on an uplink's subnet keeps the segment's path.
func TestFromPodRouted(t *testing.T) {
	d := load(t)
	tbl := classifyTable(t)
	if err := d.Sync(tbl); err != nil {
		t.Fatal(err)
	}
	allowPods(t, d, tbl)
	web := egressIDOf(t, tbl, "198.51.100.100")
	ip := netip.MustParseAddr("198.51.100.100")
	pkt := ipv4Packet("198.18.1.10", "203.0.113.5", protoTCP)
	tests := []struct {
		name     string
		uplink   bool
		routed   bool
		wantMark uint32
		wantStat string
	}{
		{name: "on no subnet, routed to: the routed way", routed: true, wantMark: markRoute | web<<16, wantStat: "from_pod_route"},
		{name: "on an uplink's subnet, and routed to: the segment's way", uplink: true, routed: true, wantMark: markSteer | web<<16, wantStat: "from_pod_steer"},
		{name: "on no subnet, no route: steered, to be dropped", wantMark: markSteer | web<<16, wantStat: "from_pod_steer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			uplinks, routed := map[netip.Addr]Uplink{}, map[netip.Addr]Routed{}
			if tt.uplink {
				uplinks[ip] = Uplink{Ifindex: 1, MAC: []byte{2, 0, 0, 0, 0, 1}}
			}
			if tt.routed {
				routed[ip] = Routed{Ifindex: 1, Src: netip.MustParseAddr("198.51.100.139")}
			}
			if err := d.SetUplinks(uplinks); err != nil {
				t.Fatal(err)
			}
			if err := d.SetRouted(routed); err != nil {
				t.Fatal(err)
			}
			var ret, mark uint32
			delta := statsDelta(t, d, func() { ret, mark = run(t, d.objs.EgwFromPod, pkt, 0) })
			if ret != retNext || mark != tt.wantMark {
				t.Errorf("returned %#x with mark %#08x, want %#x with %#08x", ret, mark, retNext, tt.wantMark)
			}
			if want := map[string]uint64{tt.wantStat: 1}; !maps.Equal(delta, want) {
				t.Errorf("counters moved %v, want %v", delta, want)
			}
		})
	}
}

// ipip wraps pkt (an Ethernet frame) in an outer IPv4 header from src to dst, addressed
// to mac: what a node on another segment sends, as the router delivers it.
func ipip(pkt []byte, src, dst netip.Addr, df bool) []byte {
	inner := pkt[14:]
	outer := make([]byte, 20)
	outer[0] = 0x45
	outer[1] = inner[1] // tos
	binary.BigEndian.PutUint16(outer[2:], uint16(20+len(inner)))
	copy(outer[4:6], inner[4:6]) // id
	if df {
		outer[6] = 0x40
	}
	outer[8] = 64
	outer[9] = 4 // IPPROTO_IPIP
	s, d := src.As4(), dst.As4()
	copy(outer[12:16], s[:])
	copy(outer[16:20], d[:])
	setIPv4Checksum(outer)
	out := append(bytes.Clone(pkt[:14]), outer...)
	return append(out, inner...)
}

// TestRouteOut: egw_uplink_out wraps a packet marked for the routed way in IPv4 from the
// node's source to the egress IP, keeps the inner packet byte for byte, clears our mark
// bits, and redirects it out of the route's interface (the kernel then fills in the
// MACs); without a route, or without an egress IP, it drops.
func TestRouteOut(t *testing.T) {
	d := load(t)
	tbl := build(t, routing.NewTableBuilder(), compile(
		pol{name: "web", dests: []string{"203.0.113.0/26"}, egressIP: "198.51.100.100"},
		pol{name: "far", dests: []string{"203.0.113.64/26"}, egressIP: "198.51.100.101"},
	), pod("198.18.4.10", "web", "far"))
	if err := d.Sync(tbl); err != nil {
		t.Fatal(err)
	}
	web, far := egressIDOf(t, tbl, "198.51.100.100"), egressIDOf(t, tbl, "198.51.100.101")
	egress, src := netip.MustParseAddr("198.51.100.100"), netip.MustParseAddr("198.51.100.139")
	if err := d.SetRouted(map[netip.Addr]Routed{egress: {Ifindex: 1, Src: src}}); err != nil {
		t.Fatal(err)
	}
	pkt := ipv4Packet("198.18.4.10", "203.0.113.5", protoTCP)
	pkt[14+6] = 0x40 // DF, as TCP sends
	tests := []struct {
		name     string
		mark     uint32
		wantRet  uint32
		wantMark uint32
		wantPkt  []byte
		wantStat map[string]uint64
	}{
		{name: "wrapped to the egress IP, DF kept, our mark bits cleared", mark: markRoute | web<<16 | 0x1234,
			wantRet: retRedirect, wantMark: 0x1234, wantPkt: ipip(pkt, src, egress, true), wantStat: one("uplink_out_encap")},
		{name: "no route to the egress IP: dropped", mark: markRoute | far<<16,
			wantRet: retDrop, wantStat: one("uplink_out_no_route")},
		{name: "an egress id with no IP: dropped", mark: markRoute | 0xFFF<<16,
			wantRet: retDrop, wantStat: one("uplink_out_no_egress_ip")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ret, mark uint32
			var out []byte
			delta := statsDelta(t, d, func() { ret, mark, out = runFrame(t, d.objs.EgwUplinkOut, pkt, tt.mark) })
			if ret != tt.wantRet {
				t.Errorf("returned %#x, want %#x", ret, tt.wantRet)
			}
			if !maps.Equal(delta, tt.wantStat) {
				t.Errorf("counters moved %v, want %v", delta, tt.wantStat)
			}
			if tt.wantRet == retDrop {
				return
			}
			if mark != tt.wantMark {
				t.Errorf("mark %#08x, want %#08x", mark, tt.wantMark)
			}
			if !bytes.Equal(out, tt.wantPkt) {
				t.Errorf("frame\n%x\nwant\n%x", out, tt.wantPkt)
			}
		})
	}
}

// TestRouteIn: egw_uplink_in takes the outer header off a routed packet for a held egress
// IP, from a node's address, and then decides as for a packet steered on the segment:
// SNAT under a valid grant, from a pod CIDR to a policy destination. From an address that
// is no node's, for a lapsed grant, or fragmented, it drops.
func TestRouteIn(t *testing.T) {
	d := load(t)
	valid, lapsed := netip.MustParseAddr("198.51.100.100"), netip.MustParseAddr("198.51.100.101")
	node, stranger := netip.MustParseAddr("198.51.100.139"), netip.MustParseAddr("198.51.100.200")
	if err := d.SetGrant(valid, 5, monotonicNow()+time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := d.SetGrant(lapsed, 6, monotonicNow()-time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := d.SetPodCIDRs([]netip.Prefix{netip.MustParsePrefix("198.18.4.0/24")}); err != nil {
		t.Fatal(err)
	}
	if err := d.SetSNATDestinations(map[netip.Addr][]netip.Prefix{valid: {netip.MustParsePrefix("203.0.113.0/25")}, lapsed: {netip.MustParsePrefix("203.0.113.0/25")}}); err != nil {
		t.Fatal(err)
	}
	if err := d.SetNodes([]netip.Addr{node, netip.MustParseAddr("198.51.100.11")}); err != nil {
		t.Fatal(err)
	}
	inner := ipv4Packet("198.18.4.10", "203.0.113.5", protoTCP)
	wrapped := func(src, dst netip.Addr, p []byte) []byte {
		return withDst(ipip(p, src, dst, true), routing.VirtualMAC(dst))
	}
	fragment := wrapped(node, valid, inner)
	fragment[14+6] |= 0x20 // MF
	tests := []struct {
		name     string
		pkt      []byte
		wantRet  uint32
		wantMark uint32
		wantPkt  []byte
		wantStat map[string]uint64
	}{
		{name: "from a node, to a held IP: unwrapped and marked for SNAT", pkt: wrapped(node, valid, inner),
			wantRet: retNext, wantMark: markSNAT | 5<<16 | 0x1234, wantPkt: withDst(inner, routing.VirtualMAC(valid)),
			wantStat: map[string]uint64{"uplink_in_decap": 1, "uplink_in_snat": 1}},
		{name: "from an address no node has: dropped", pkt: wrapped(stranger, valid, inner),
			wantRet: retDrop, wantStat: one("uplink_in_not_node")},
		{name: "to a lapsed grant: dropped", pkt: wrapped(node, lapsed, inner),
			wantRet: retDrop, wantStat: one("uplink_in_expired")},
		{name: "a fragment: dropped", pkt: fragment,
			wantRet: retDrop, wantStat: one("uplink_in_malformed")},
		{name: "from a node, inside from no pod: dropped", pkt: wrapped(node, valid, ipv4Packet("198.51.100.77", "203.0.113.5", protoUDP)),
			wantRet: retDrop, wantStat: map[string]uint64{"uplink_in_decap": 1, "uplink_in_not_pod": 1}},
		{name: "from a node, inside to no policy destination: dropped", pkt: wrapped(node, valid, ipv4Packet("198.18.4.10", "203.0.113.200", protoUDP)),
			wantRet: retDrop, wantStat: map[string]uint64{"uplink_in_decap": 1, "uplink_in_not_destination": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ret, mark uint32
			var out []byte
			delta := statsDelta(t, d, func() { ret, mark, out = runFrame(t, d.objs.EgwUplinkIn, tt.pkt, 0x1234) })
			if ret != tt.wantRet {
				t.Errorf("returned %#x, want %#x", ret, tt.wantRet)
			}
			if !maps.Equal(delta, tt.wantStat) {
				t.Errorf("counters moved %v, want %v", delta, tt.wantStat)
			}
			if tt.wantRet == retDrop {
				return
			}
			if mark != tt.wantMark {
				t.Errorf("mark %#08x, want %#08x", mark, tt.wantMark)
			}
			if !bytes.Equal(out, tt.wantPkt) {
				t.Errorf("frame\n%x\nwant\n%x", out, tt.wantPkt)
			}
		})
	}
}
