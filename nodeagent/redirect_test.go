package nodeagent

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/egressgw/egressgw/apiserver/routing"
	"github.com/egressgw/egressgw/bpf"
)

// TestRedirectedPods: a pod whose interface carries another program is parked in the
// unknown set (its policy destinations drop) and named, with the program, for PodsCovered
// and for status.redirectedPods; the other pods keep their sets.
func TestRedirectedPods(t *testing.T) {
	s := cluster(1, []netip.Addr{ip1})
	fe, other := frontend("fe3", "198.18.1.30"), frontend("fe4", "198.18.1.31")
	s.pods = append(s.pods, fe, other)
	d, err := s.desired(routing.NewTableBuilder())
	if err != nil {
		t.Fatal(err)
	}
	feIP, otherIP := netip.MustParseAddr("198.18.1.30"), netip.MustParseAddr("198.18.1.31")
	if d.table.Pods[feIP] == routing.UnknownSet {
		t.Fatal("the pod is in the unknown set before anything was found on its interface")
	}
	why := redirectReason([]bpf.ForeignProgram{{ID: 42, Name: "cil_from_container", Hook: "tcx ingress"}}, true)
	table, uncovered, names := s.redirectedPods(d.table, map[netip.Addr]string{feIP: why})
	if table.Pods[feIP] != routing.UnknownSet || table.Pods[otherIP] != d.table.Pods[otherIP] {
		t.Errorf("sets after parking: %d and %d, want the unknown set and %d", table.Pods[feIP], table.Pods[otherIP], d.table.Pods[otherIP])
	}
	if d.table.Pods[feIP] == routing.UnknownSet {
		t.Error("parking changed the table it was given")
	}
	if !slices.Equal(names, []string{"alice/fe3"}) {
		t.Errorf("redirectedPods %v, want [alice/fe3]", names)
	}
	if len(uncovered) != 1 || !strings.HasPrefix(uncovered[0], "alice/fe3: another BPF program is on its interface (tcx ingress program 42 (cil_from_container))") ||
		!strings.Contains(uncovered[0], "ran ahead of egressgw's, which runs first again") {
		t.Errorf("PodsCovered entries %q", uncovered)
	}
	if table, uncovered, names := s.redirectedPods(d.table, nil); len(uncovered)+len(names) != 0 || table.Pods[feIP] != d.table.Pods[feIP] {
		t.Errorf("with nothing found: %v %v", uncovered, names)
	}
}
