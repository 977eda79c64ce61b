package routing

import (
	"fmt"
	"net/netip"
	"testing"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
)

func localPod(name, ip string, ns map[string]string, labels ...string) LocalPod {
	p := LocalPod{Pod: Pod{Namespace: "ns", Name: name, IP: netip.MustParseAddr(ip), Node: "worker1", Labels: map[string]string{}}, NamespaceLabels: ns}
	for i := 0; i+1 < len(labels); i += 2 {
		p.Labels[labels[i]] = labels[i+1]
	}
	return p
}

func TestTableBuild(t *testing.T) {
	alice := map[string]string{"user": "alice"}
	objs := []*v1.EgressNATPolicy{
		policy("egress", 10, []string{"8.8.8.0/24"}, [2]string{"user=alice", "role=frontend"}),
		policy("other", 5, []string{"203.0.113.0/24"}, [2]string{"user=alice", "role=db"}),
		policy("lost", 1, []string{"9.9.9.0/24"}, [2]string{"user=alice", "role=db"}),
	}
	res := resolver(map[string]string{"egress": "198.51.100.100", "other": "198.51.100.101"},
		map[string]string{"198.51.100.100": "worker1", "198.51.100.101": "worker2"})
	pods := []LocalPod{
		localPod("fe1", "198.18.1.10", alice, "role", "frontend"),
		localPod("fe2", "198.18.1.11", alice, "role", "frontend"),
		localPod("db", "198.18.1.12", alice, "role", "db"),
		localPod("plain", "198.18.1.13", alice),
		func() LocalPod {
			p := localPod("host", "198.51.100.11", alice, "role", "frontend")
			p.HostNetwork = true
			return p
		}(),
	}
	b := NewTableBuilder()
	tbl, err := b.Build(Compile(objs, res), pods, cluster)
	if err != nil {
		t.Fatal(err)
	}

	lookup := func(tbl Table, pod, dst string) string {
		set, ok := tbl.Pods[netip.MustParseAddr(pod)]
		if !ok {
			set = UnknownSet
		}
		var routes []Route
		byPrefix := map[netip.Prefix]TableRoute{}
		for _, r := range tbl.Sets[set] {
			routes = append(routes, r.Route)
			byPrefix[r.Prefix] = r
		}
		r, found := Lookup(routes, netip.MustParseAddr(dst))
		if !found {
			return "pass"
		}
		tr := byPrefix[r.Prefix]
		if tr.Verdict == SNAT {
			return fmt.Sprintf("SNAT %s", tbl.Egress[tr.EgressID])
		}
		return tr.Verdict.String()
	}
	tests := []struct {
		name, pod, dst, want string
	}{
		{name: "selected pod to its destination", pod: "198.18.1.10", dst: "8.8.8.8", want: "SNAT 198.51.100.100"},
		{name: "a second pod of the same policies shares the set", pod: "198.18.1.11", dst: "8.8.8.8", want: "SNAT 198.51.100.100"},
		{name: "another policy's pod", pod: "198.18.1.12", dst: "203.0.113.10", want: "SNAT 198.51.100.101"},
		{name: "a not-ready policy drops", pod: "198.18.1.12", dst: "9.9.9.9", want: "Drop"},
		{name: "unselected pod passes", pod: "198.18.1.13", dst: "8.8.8.8", want: "pass"},
		{name: "unknown pod to a policy destination drops", pod: "198.18.1.99", dst: "8.8.8.8", want: "Drop"},
		{name: "unknown pod to another destination passes", pod: "198.18.1.99", dst: "1.1.1.1", want: "pass"},
		{name: "in-cluster is never steered", pod: "198.18.1.10", dst: "198.18.2.10", want: "InCluster"},
		{name: "host-network pods are not in the table", pod: "198.51.100.11", dst: "8.8.8.8", want: "Drop"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := lookup(tbl, tt.pod, tt.dst); got != tt.want {
				t.Errorf("%s → %s: got %s, want %s", tt.pod, tt.dst, got, tt.want)
			}
		})
	}
	if tbl.Pods[netip.MustParseAddr("198.18.1.10")] != tbl.Pods[netip.MustParseAddr("198.18.1.11")] {
		t.Error("pods selected by the same policies are in different sets")
	}

	t.Run("ids stay stable and are not reused within a build", func(t *testing.T) {
		fe := tbl.Pods[netip.MustParseAddr("198.18.1.10")]
		eid := egressID(tbl, "198.51.100.100")
		otherID := egressID(tbl, "198.51.100.101")
		// "other" moves to a new IP; "egress" keeps its own.
		res2 := resolver(map[string]string{"egress": "198.51.100.100", "other": "198.51.100.102"},
			map[string]string{"198.51.100.100": "worker1", "198.51.100.102": "worker2"})
		tbl2, err := b.Build(Compile(objs, res2), pods, cluster)
		if err != nil {
			t.Fatal(err)
		}
		if got := tbl2.Pods[netip.MustParseAddr("198.18.1.10")]; got != fe {
			t.Errorf("set id of an unchanged pod changed from %d to %d", fe, got)
		}
		if got := egressID(tbl2, "198.51.100.100"); got != eid {
			t.Errorf("egress id of an unchanged IP changed from %d to %d", eid, got)
		}
		if got := egressID(tbl2, "198.51.100.102"); got == otherID {
			t.Errorf("the id %d of a released IP was reused in the same build", got)
		}
		// A third build may reuse it, now that no route refers to it.
		res3 := resolver(map[string]string{"egress": "198.51.100.100", "other": "198.51.100.103"},
			map[string]string{"198.51.100.100": "worker1", "198.51.100.103": "worker2"})
		tbl3, err := b.Build(Compile(objs, res3), pods, cluster)
		if err != nil {
			t.Fatal(err)
		}
		if got := egressID(tbl3, "198.51.100.103"); got != otherID {
			t.Errorf("freed egress id %d not reused a build later (got %d)", otherID, got)
		}
	})
}

// TestTableSeed: a builder seeded with another builder's numbering (a restarted agent,
// reading the pinned maps) numbers the same tables the same, even when it meets the pods
// in another order, so its first Sync writes nothing.
func TestTableSeed(t *testing.T) {
	alice := map[string]string{"user": "alice"}
	objs := []*v1.EgressNATPolicy{
		policy("egress", 10, []string{"8.8.8.0/24"}, [2]string{"user=alice", "role=frontend"}),
		policy("other", 5, []string{"203.0.113.0/24"}, [2]string{"user=alice", "role=db"}),
	}
	res := resolver(map[string]string{"egress": "198.51.100.100", "other": "198.51.100.101"},
		map[string]string{"198.51.100.100": "worker1", "198.51.100.101": "worker2"})
	pods := []LocalPod{
		localPod("fe", "198.18.1.10", alice, "role", "frontend"),
		localPod("db", "198.18.1.12", alice, "role", "db"),
		localPod("plain", "198.18.1.13", alice),
	}
	first, err := NewTableBuilder().Build(Compile(objs, res), pods, cluster)
	if err != nil {
		t.Fatal(err)
	}
	reversed := []LocalPod{pods[2], pods[1], pods[0]}
	fresh, err := NewTableBuilder().Build(Compile(objs, res), reversed, cluster)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(fresh.Pods) == fmt.Sprint(first.Pods) && fmt.Sprint(fresh.Egress) == fmt.Sprint(first.Egress) {
		t.Fatal("an unseeded builder numbered the reversed pods the same: the test shows nothing")
	}
	b := NewTableBuilder()
	b.Seed(first.Pods, first.Egress)
	again, err := b.Build(Compile(objs, res), reversed, cluster)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(again.Pods) != fmt.Sprint(first.Pods) || fmt.Sprint(again.Egress) != fmt.Sprint(first.Egress) {
		t.Errorf("seeded numbering differs:\npods %v, want %v\negress %v, want %v", again.Pods, first.Pods, again.Egress, first.Egress)
	}
}

func egressID(tbl Table, ip string) uint32 {
	for id, a := range tbl.Egress {
		if a.String() == ip {
			return id
		}
	}
	return 0
}

func TestIDsRunOut(t *testing.T) {
	ids := NewIDs(1, 2)
	for _, key := range []string{"a", "b"} {
		if _, err := ids.Get(key); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ids.Get("c"); err == nil {
		t.Error("a third id out of two was handed out")
	}
}

// TestIDsKeep: a restarted agent keeps the ids its dataplane still uses, and new keys
// get the ids around them.
func TestIDsKeep(t *testing.T) {
	ids := NewIDs(1, 10)
	if err := ids.Keep("a", 3); err != nil {
		t.Fatal(err)
	}
	if err := ids.Keep("b", 1); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		key string
		id  uint32
	}{{"c", 3}, {"a", 4}, {"d", 0}, {"e", 11}} {
		if err := ids.Keep(bad.key, bad.id); err == nil {
			t.Errorf("Keep(%s, %d) succeeded", bad.key, bad.id)
		}
	}
	got := map[uint32]bool{}
	for _, key := range []string{"a", "b", "x", "y"} {
		id, err := ids.Get(key)
		if err != nil {
			t.Fatal(err)
		}
		if got[id] {
			t.Errorf("id %d handed out twice", id)
		}
		got[id] = true
	}
	if a, _ := ids.Get("a"); a != 3 {
		t.Errorf("a has id %d, want the kept 3", a)
	}
	if x, _ := ids.Get("x"); x != 2 {
		t.Errorf("x has id %d, want 2, the gap below the kept ids", x)
	}
}
