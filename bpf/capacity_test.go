package bpf

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

// uplinksFrom are n uplinks (map keys only: no packet is sent to them) for consecutive IPs from first, all on one interface.
func uplinksFrom(first netip.Addr, n int, mac net.HardwareAddr) map[netip.Addr]Uplink {
	out := make(map[netip.Addr]Uplink, n)
	for ip := first; len(out) < n; ip = ip.Next() {
		out[ip] = Uplink{Ifindex: 1, MAC: mac} // loopback, where prog.Run runs
	}
	return out
}

// TestSetUplinksAtCapacity: egw_uplinks at its real size, 4096. A full map that moves to
// another 4096 IPs makes room first (stale entries go before new ones), so it never wedges;
// a set past the limit keeps the IPs already held, refuses the rest with a CapacityError
// that names the map and its limit, and the refused IPs' steered packets drop (fail closed),
// while the IPs held still go out of their uplink.
func TestSetUplinksAtCapacity(t *testing.T) {
	d := load(t)
	limit := int(d.objs.EgwUplinks.MaxEntries())
	if limit != 4096 {
		t.Fatalf("egw_uplinks holds %d, this test is for 4096", limit)
	}
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	old := uplinksFrom(netip.MustParseAddr("198.18.0.0"), limit, mac)
	if err := d.SetUplinks(old); err != nil {
		t.Fatalf("filling egw_uplinks to its limit: %v", err)
	}
	// Another 4096: the old and new together are twice the map.
	moved := uplinksFrom(netip.MustParseAddr("198.18.64.0"), limit, mac)
	if err := d.SetUplinks(moved); err != nil {
		t.Fatalf("moving a full egw_uplinks to another %d IPs: %v", limit, err)
	}
	// Ten more than fit: the 4096 held stay, the ten new are refused.
	over := uplinksFrom(netip.MustParseAddr("198.18.64.0"), limit, mac)
	extra := uplinksFrom(netip.MustParseAddr("198.19.0.0"), 10, mac)
	for ip, u := range extra {
		over[ip] = u
	}
	err := d.SetUplinks(over)
	var ce *CapacityError
	if !errors.As(err, &ce) || ce.Map != "egw_uplinks" || ce.Limit != limit || len(ce.Refused) != len(extra) {
		t.Fatalf("SetUplinks(%d IPs) = %v, want a CapacityError of egw_uplinks, limit %d, %d refused", len(over), err, limit, len(extra))
	}
	for ip := range moved {
		var v uplinkValue
		if err := d.objs.EgwUplinks.Lookup(ipv4(ip.As4()), &v); err != nil {
			t.Fatalf("uplink of %s, held before the overflow, is gone: %v", ip, err)
		}
	}
	// A packet steered to a held IP goes out of its uplink; one steered to a refused IP drops.
	for _, tt := range []struct {
		name string
		ip   netip.Addr
		want uint32
	}{
		{name: "held", ip: netip.MustParseAddr("198.18.64.5"), want: retNext},
		{name: "refused", ip: netip.MustParseAddr("198.19.0.5"), want: retDrop},
	} {
		t.Run(tt.name, func(t *testing.T) {
			id := uint32(7)
			if err := d.objs.EgwEgress.Update(id, ipv4(tt.ip.As4()), 0); err != nil {
				t.Fatal(err)
			}
			ret, _, _ := runFrame(t, d.objs.EgwUplinkOut, pkt0(), markSteer|id<<16)
			if ret != tt.want {
				t.Errorf("a packet steered to %s (%s): verdict %d, want %d", tt.ip, tt.name, ret, tt.want)
			}
		})
	}
}

// TestSetGrantAtCapacity: egw_grants at its real size, 4096. A grant past it is refused
// with a CapacityError naming the map and its limit, and writes nothing; the grants there
// keep working, and once a stale one is deleted the refused IP fits.
func TestSetGrantAtCapacity(t *testing.T) {
	d := load(t)
	limit := int(d.objs.EgwGrants.MaxEntries())
	if limit != 4096 {
		t.Fatalf("egw_grants holds %d, this test is for 4096", limit)
	}
	first := netip.MustParseAddr("198.18.0.0")
	ip := first
	for i := range limit {
		if err := d.SetGrant(ip, uint32(i%markIDMax)+1, time.Hour); err != nil {
			t.Fatalf("grant %d of %d: %v", i+1, limit, err)
		}
		ip = ip.Next()
	}
	extra := netip.MustParseAddr("198.19.0.1")
	err := d.SetGrant(extra, 1, time.Hour)
	var ce *CapacityError
	if !errors.As(err, &ce) || ce.Map != "egw_grants" || ce.Limit != limit || len(ce.Refused) != 1 || ce.Refused[0] != extra.String() {
		t.Fatalf("SetGrant past %d = %v, want a CapacityError of egw_grants, limit %d, refusing %s", limit, err, limit, extra)
	}
	grants, err := d.Grants()
	if err != nil {
		t.Fatal(err)
	}
	if len(grants) != limit || grants[first] != 1 {
		t.Errorf("after the refusal: %d grants, %s has snat id %d; want %d, and 1", len(grants), first, grants[first], limit)
	}
	if _, ok := grants[extra]; ok {
		t.Errorf("the refused %s is granted", extra)
	}
	if err := d.DeleteGrant(first); err != nil {
		t.Fatal(err)
	}
	if err := d.SetGrant(extra, 1, time.Hour); err != nil {
		t.Errorf("SetGrant after a stale grant went: %v", err)
	}
}
