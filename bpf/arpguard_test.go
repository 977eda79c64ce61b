package bpf

import (
	"maps"
	"net/netip"
	"testing"
	"time"
)

// TestARPGuard: an interface sends no ARP that claims a floating IP whose grant has
// lapsed, and everything else passes: ARP for a valid grant, for the node's own
// addresses, and other traffic.
func TestARPGuard(t *testing.T) {
	d := load(t)
	valid, lapsed := netip.MustParseAddr("198.51.100.100"), netip.MustParseAddr("198.51.100.101")
	if err := d.SetGrant(valid, 1, monotonicNow()+time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := d.SetGrant(lapsed, 2, monotonicNow()-time.Millisecond); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		pkt      []byte
		wantRet  uint32
		wantStat string
	}{
		{name: "a reply for a lapsed grant", pkt: arpPacket(2, lapsed), wantRet: retDrop, wantStat: "arp_lapsed_grant"},
		{name: "a gratuitous announcement of a lapsed grant", pkt: arpPacket(1, lapsed), wantRet: retDrop, wantStat: "arp_lapsed_grant"},
		{name: "a reply for a valid grant", pkt: arpPacket(2, valid), wantRet: retNext},
		{name: "a reply for the node's own address", pkt: arpPacket(2, netip.MustParseAddr("198.51.100.11")), wantRet: retNext},
		{name: "IPv4 from the lapsed address (not ARP)", pkt: ipv4Packet(lapsed.String(), "203.0.113.10", protoUDP), wantRet: retNext},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ret uint32
			delta := statsDelta(t, d, func() { ret, _ = run(t, d.objs.EgwArpGuard, tt.pkt, 0) })
			if ret != tt.wantRet {
				t.Errorf("returned %#x, want %#x", ret, tt.wantRet)
			}
			want := map[string]uint64{}
			if tt.wantStat != "" {
				want[tt.wantStat] = 1
			}
			if !maps.Equal(delta, want) {
				t.Errorf("counters moved %v, want %v", delta, want)
			}
		})
	}
}
