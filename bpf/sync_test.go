package bpf

import (
	"maps"
	"net/netip"
	"testing"

	"github.com/egressgw/egressgw/apiserver/routing"
)

// holdsExactly fails unless the maps hold exactly the table.
func holdsExactly(t *testing.T, d *Dataplane, tbl routing.Table) {
	t.Helper()
	want, err := fromTable(tbl)
	if err != nil {
		t.Fatal(err)
	}
	have, err := d.read()
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(have.pods, want.pods) {
		t.Errorf("egw_pods holds %v, want %v", have.pods, want.pods)
	}
	if !maps.Equal(have.routes, want.routes) {
		t.Errorf("egw_set_routes' tries hold %d routes, want %d:\n%v\nwant\n%v", len(have.routes), len(want.routes), have.routes, want.routes)
	}
	if !maps.Equal(have.egress, want.egress) {
		t.Errorf("egw_egress holds %v, want %v", have.egress, want.egress)
	}
}

func TestSync(t *testing.T) {
	d := load(t)
	b := routing.NewTableBuilder()
	a := build(t, b, compile(
		pol{name: "web", age: 30, dests: []string{"203.0.113.0/25", "198.19.0.0/16"}, egressIP: "198.51.100.100"},
		pol{name: "db", age: 20, dests: []string{"203.0.113.128/26"}, egressIP: "198.51.100.101"},
	), pod("198.18.1.10", "web"), pod("198.18.1.11", "db"), pod("198.18.1.12"))
	// The db pod moves to web's set, db's IP changes, web loses a destination, a pod leaves.
	next := build(t, b, compile(
		pol{name: "web", age: 30, dests: []string{"203.0.113.0/25"}, egressIP: "198.51.100.100"},
		pol{name: "db", age: 20, dests: []string{"203.0.113.128/26"}, egressIP: "198.51.100.102"},
	), pod("198.18.1.10", "web"), pod("198.18.1.11", "web"), pod("198.18.1.13", "db"))

	steps := []struct {
		name       string
		table      routing.Table
		wantWrites bool
	}{
		{name: "an empty dataplane gets the first table", table: a, wantWrites: true},
		{name: "the same table again writes nothing", table: a},
		{name: "a changed table replaces it", table: next, wantWrites: true},
		{name: "and again writes nothing", table: next},
		{name: "back to the first", table: a, wantWrites: true},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			before := d.writes
			if err := d.Sync(s.table); err != nil {
				t.Fatal(err)
			}
			holdsExactly(t, d, s.table)
			if wrote := d.writes - before; (wrote > 0) != s.wantWrites {
				t.Errorf("wrote %d entries, want writes: %v", wrote, s.wantWrites)
			}
		})
	}
}

func TestSyncRejectsBadTables(t *testing.T) {
	d := load(t)
	good := classifyTable(t)
	if err := d.Sync(good); err != nil {
		t.Fatal(err)
	}
	web := egressIDOf(t, good, "198.51.100.100")
	tests := []struct {
		name   string
		mutate func(*routing.Table)
	}{
		{name: "an IPv6 pod", mutate: func(tb *routing.Table) { tb.Pods[netip.MustParseAddr("2001:db8::1")] = 1 }},
		{name: "a pod in a set with no routes", mutate: func(tb *routing.Table) { tb.Pods[netip.MustParseAddr("198.18.1.99")] = 999 }},
		{name: "an egress id that does not fit the mark", mutate: func(tb *routing.Table) { tb.Egress[0x1000] = netip.MustParseAddr("198.51.100.9") }},
		{name: "a route to an egress id with no IP", mutate: func(tb *routing.Table) { delete(tb.Egress, web) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := classifyTable(t)
			tt.mutate(&bad)
			before := d.writes
			if err := d.Sync(bad); err == nil {
				t.Error("Sync accepted it")
			}
			if d.writes != before {
				t.Errorf("Sync wrote %d entries before refusing", d.writes-before)
			}
		})
	}
}

// outcome is what happens to a packet, as a test can see it: "pass" (classified,
// in-cluster or not), "drop", or "steer <egress IP>".
func tableOutcome(tbl routing.Table, src, dst netip.Addr) string {
	set, ok := tbl.Pods[src]
	if !ok {
		set = routing.UnknownSet
	}
	var best *routing.TableRoute
	for i, r := range tbl.Sets[set] {
		if r.Prefix.Contains(dst) && (best == nil || r.Prefix.Bits() > best.Prefix.Bits()) {
			best = &tbl.Sets[set][i]
		}
	}
	switch {
	case best == nil || best.Verdict == routing.InCluster:
		return "pass"
	case best.Verdict == routing.SNAT:
		return "steer " + tbl.Egress[best.EgressID].String()
	}
	return "drop"
}

// restartTables are two tables for the same pods, the second built by a fresh
// TableBuilder (as after an agent restart) that numbers sets and egress IPs otherwise:
// set and egress ids of the first mean other policies and IPs in the second.
func restartTables(t *testing.T) (routing.Table, routing.Table, []netip.Addr, []netip.Addr) {
	ps := compile(
		pol{name: "web", age: 30, dests: []string{"203.0.113.0/25", "198.19.0.0/16"}, egressIP: "198.51.100.100"},
		pol{name: "db", age: 20, dests: []string{"203.0.113.128/25", "198.19.1.0/24"}, egressIP: "198.51.100.101"},
		pol{name: "narrow", age: 40, dests: []string{"203.0.113.0/28"}, egressIP: "198.51.100.102"},
		pol{name: "down", age: 10, dests: []string{"203.0.113.16/28"}},
	)
	p1, p2, p3 := pod("198.18.1.1", "web"), pod("198.18.1.2", "db"), pod("198.18.1.3", "web", "db", "down")
	a := build(t, routing.NewTableBuilder(), ps, p1, p2, p3)
	// After the restart p1 is also selected by narrow, and a new pod appears.
	p1b := pod("198.18.1.1", "web", "narrow")
	b := build(t, routing.NewTableBuilder(), ps, p2, p1b, pod("198.18.1.4", "narrow"), p3)
	if a.Pods[p1.IP] != b.Pods[p2.IP] || egressIDOf(t, a, "198.51.100.100") != egressIDOf(t, b, "198.51.100.101") {
		t.Fatalf("the tables do not renumber as this test needs: %v %v / %v %v", a.Pods, a.Egress, b.Pods, b.Egress)
	}
	srcs := []netip.Addr{p1.IP, p2.IP, p3.IP, netip.MustParseAddr("198.18.1.4"), netip.MustParseAddr("198.18.9.9")}
	var dsts []netip.Addr
	for _, s := range []string{"203.0.113.1", "203.0.113.17", "203.0.113.100", "203.0.113.200", "198.19.0.1", "198.19.1.1", "198.18.2.2", "198.51.100.9"} {
		dsts = append(dsts, netip.MustParseAddr(s))
	}
	return a, b, srcs, dsts
}

// TestSyncNeverMisSteers runs the real program on probe packets after every single
// map write of a Sync across an agent restart, and requires each outcome to be the
// old table's, the new table's, or a drop: never another policy's egress IP.
func TestSyncNeverMisSteers(t *testing.T) {
	d := load(t)
	a, b, srcs, dsts := restartTables(t)
	if err := d.Sync(a); err != nil {
		t.Fatal(err)
	}
	allowSources(t, d, srcs...)
	outcome := func(src, dst netip.Addr) string {
		ret, mark := run(t, d.objs.EgwFromPod, ipv4Packet(src.String(), dst.String(), protoUDP), 0)
		switch {
		case ret == retDrop:
			return "drop"
		case mark&markClassMask != markSteer:
			return "pass"
		}
		var ip ipv4
		if err := d.objs.EgwEgress.Lookup(mark>>markIDShift&markIDMax, &ip); err != nil {
			return "drop" // egw_uplink_out drops it
		}
		return "steer " + ip.addr().String()
	}
	writes := 0
	check := func(final bool) {
		for _, src := range srcs {
			for _, dst := range dsts {
				got, old, new := outcome(src, dst), tableOutcome(a, src, dst), tableOutcome(b, src, dst)
				if final && got != new || got != old && got != new && got != "drop" {
					t.Errorf("after write %d: %s → %s: %s; the old table says %s, the new one %s", writes, src, dst, got, old, new)
				}
			}
		}
	}
	d.afterWrite = func() { writes++; check(false) }
	if err := d.Sync(b); err != nil {
		t.Fatal(err)
	}
	d.afterWrite = nil
	check(true)
	holdsExactly(t, d, b)
	t.Logf("checked %d probes after each of %d writes", len(srcs)*len(dsts), writes)
}
