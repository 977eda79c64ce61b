package bpf

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/egressgw/egressgw/apiserver/routing"
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

// capTable is a table for the Sync capacity tests: pods in set 1, whose policy sends
// 203.0.113.5/32 and n-1 more /32s from 100.64.0.0 to egress IP 198.51.100.100 (id 1);
// the unknown set drops them all; the cluster is 198.18.0.0/15.
func capTable(pods []netip.Addr, n int) routing.Table {
	clusterRoute := routing.TableRoute{Route: routing.Route{Prefix: netip.MustParsePrefix("198.18.0.0/15"), Verdict: routing.InCluster}}
	set := []routing.TableRoute{clusterRoute, {Route: routing.Route{Prefix: netip.MustParsePrefix("203.0.113.5/32"), Verdict: routing.SNAT}, EgressID: 1}}
	unknown := []routing.TableRoute{clusterRoute, {Route: routing.Route{Prefix: netip.MustParsePrefix("203.0.113.5/32"), Verdict: routing.Drop}}}
	ip := netip.MustParseAddr("100.64.0.0")
	for range n - 1 {
		set = append(set, routing.TableRoute{Route: routing.Route{Prefix: netip.PrefixFrom(ip, 32), Verdict: routing.SNAT}, EgressID: 1})
		unknown = append(unknown, routing.TableRoute{Route: routing.Route{Prefix: netip.PrefixFrom(ip, 32), Verdict: routing.Drop}})
		ip = ip.Next()
	}
	tbl := routing.Table{Pods: map[netip.Addr]uint32{}, Sets: map[uint32][]routing.TableRoute{0: unknown, 1: set},
		Egress: map[uint32]netip.Addr{1: netip.MustParseAddr("198.51.100.100")}}
	for _, p := range pods {
		tbl.Pods[p] = 1
	}
	return tbl
}

// outcomeOf runs egw_from_pod on a packet from src to dst: "steer", "in-cluster", "pass" or "drop".
func outcomeOf(t *testing.T, d *Dataplane, src, dst string) string {
	t.Helper()
	ret, mark := run(t, d.objs.EgwFromPod, ipv4Packet(src, dst, protoUDP), 0)
	stats := statsDelta(t, d, func() { run(t, d.objs.EgwFromPod, ipv4Packet(src, dst, protoUDP), 0) })
	switch {
	case ret == retDrop:
		return "drop"
	case mark&markClassMask == markSteer:
		return "steer"
	case stats["from_pod_in_cluster"] > 0:
		return "in-cluster"
	}
	return "pass"
}

// TestSyncAtCapacity: egw_pods and the routes tries at their real size, 65,536. A table
// past either is written but for what does not fit, which fails closed and is refused
// with a CapacityError naming the map and its limit: the pods held keep their sets, new
// pods past the room stay in the unknown set (policy destinations drop), and a set with
// more routes than a trie holds keeps its in-cluster routes and drops the rest, never
// passing a destination it could not hold.
func TestSyncAtCapacity(t *testing.T) {
	d := load(t)
	limit := int(d.objs.EgwPods.MaxEntries())
	if limit != 65536 || d.routesSpec.MaxEntries != 65536 {
		t.Fatalf("egw_pods holds %d and a trie %d, this test is for 65536", limit, d.routesSpec.MaxEntries)
	}
	fe := netip.MustParseAddr("198.18.0.10")
	if err := d.Sync(capTable([]netip.Addr{fe}, 10)); err != nil {
		t.Fatal(err)
	}
	// The sources the outcomes are checked from may send through the program, as their
	// veths would let them: what drops, drops for the table's sake.
	allowSources(t, d, fe, netip.MustParseAddr("198.18.9.9"))

	t.Run("egw_pods", func(t *testing.T) {
		pods := make([]netip.Addr, 0, limit+3)
		for ip := netip.MustParseAddr("198.18.0.10"); len(pods) < limit+3; ip = ip.Next() {
			pods = append(pods, ip)
		}
		err := d.Sync(capTable(pods, 10))
		var ce *CapacityError
		if !errors.As(err, &ce) || ce.Map != "egw_pods" || ce.Limit != limit || len(ce.Refused) != 3 {
			t.Fatalf("Sync(%d pods) = %v, want a CapacityError of egw_pods, limit %d, 3 refused", len(pods), err, limit)
		}
		if got := outcomeOf(t, d, fe.String(), "203.0.113.5"); got != "steer" {
			t.Errorf("a pod held before: %s, want steer", got)
		}
		allowSources(t, d, pods[len(pods)-1])
		if got := outcomeOf(t, d, pods[len(pods)-1].String(), "203.0.113.5"); got != "drop" {
			t.Errorf("a refused pod to its policy's destination: %s, want drop", got)
		}
		if err := d.Sync(capTable([]netip.Addr{fe}, 10)); err != nil {
			t.Fatalf("back to one pod: %v", err)
		}
	})

	t.Run("a set's trie, and set 0's", func(t *testing.T) {
		err := d.Sync(capTable([]netip.Addr{fe}, 65536))
		var ce *CapacityError
		if !errors.As(err, &ce) || ce.Map != "egw_set_routes's tries" || ce.Limit != 65536 || len(ce.Refused) != 2 {
			t.Fatalf("Sync(65537 routes in sets 0 and 1) = %v, want a CapacityError of the tries, limit 65536, both sets refused", err)
		}
		for _, tt := range []struct{ name, src, dst, want string }{
			{"a destination held before", fe.String(), "203.0.113.5", "drop"},
			{"a destination it could not hold", fe.String(), "100.64.255.254", "drop"},
			{"any other destination", fe.String(), "203.0.113.77", "drop"},
			{"in-cluster", fe.String(), "198.18.2.2", "in-cluster"},
			{"an unknown pod", "198.18.9.9", "100.64.255.254", "drop"},
		} {
			if got := outcomeOf(t, d, tt.src, tt.dst); got != tt.want {
				t.Errorf("%s: %s → %s: %s, want %s", tt.name, tt.src, tt.dst, got, tt.want)
			}
		}
		if err := d.Sync(capTable([]netip.Addr{fe}, 10)); err != nil {
			t.Fatalf("back to ten routes: %v", err)
		}
		if got := outcomeOf(t, d, fe.String(), "203.0.113.5"); got != "steer" {
			t.Errorf("within the limit again: %s, want steer", got)
		}
	})
}

// TestSyncEgressAtCapacity: egw_egress at its real size, 4096, holds the builder's whole
// id space (4,095) twice over in a move: a full table of egress ids moving to 4,095 other
// IPs fits, since the old and new entries share the ids, and nothing is refused.
func TestSyncEgressAtCapacity(t *testing.T) {
	d := load(t)
	if n := int(d.objs.EgwEgress.MaxEntries()); n != routing.MaxEgressIDs+1 {
		t.Fatalf("egw_egress holds %d, this test is for %d", n, routing.MaxEgressIDs+1)
	}
	for _, first := range []string{"100.100.0.0", "100.101.0.0"} {
		tbl := capTable(nil, 1)
		ip := netip.MustParseAddr(first)
		for id := uint32(1); id <= routing.MaxEgressIDs; id++ {
			tbl.Egress[id] = ip
			ip = ip.Next()
		}
		if err := d.Sync(tbl); err != nil {
			t.Fatalf("Sync(%d egress ids from %s): %v", routing.MaxEgressIDs, first, err)
		}
		holdsExactly(t, d, tbl)
	}
}
