package bpf

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/egressgw/egressgw/test/testenv"
)

// TestForeignPrograms: with egw_from_pod alone on a pod's veth, nothing is foreign. A
// CNI's redirecting program attached ahead of it is found, named, and egw_from_pod is put
// first again; once the CNI's program goes, nothing is foreign again.
func TestForeignPrograms(t *testing.T) {
	ns := newNetns(t, "foreign")
	const index = 4343
	podVeth(t, ns, index)
	sh(t, "ip", "-n", ns, "link", "add", "uplink", "type", "veth", "peer", "name", "peer")
	d := load(t)
	var foreign []ForeignProgram
	var moved bool
	var err error
	query := func() {
		inNetns(t, ns, func() { foreign, moved, err = d.ForeignPrograms(index) })
		if err != nil {
			t.Fatal(err)
		}
	}
	inNetns(t, ns, func() {
		if err := d.AttachPod(index, []netip.Addr{netip.MustParseAddr("198.18.1.10")}); err != nil {
			t.Fatal(err)
		}
	})
	if query(); len(foreign) != 0 || moved {
		t.Fatalf("egw_from_pod alone: foreign %v, moved %v", foreign, moved)
	}
	cni, err := testenv.AttachRedirect(ns, "host", "uplink")
	if err != nil {
		t.Fatal(err)
	}
	ours := programID(t, d.objs.EgwFromPod)
	if got := attached(t, ns, index, ebpf.AttachTCXIngress); len(got) != 2 || got[0] == ours {
		t.Fatalf("the CNI's program is not ahead of egw_from_pod: %v", got)
	}
	if query(); len(foreign) != 1 || foreign[0].Hook != "tcx ingress" || foreign[0].Name != "test_redirect" || !moved {
		t.Fatalf("with a CNI's program ahead: foreign %v, moved %v; want test_redirect on tcx ingress, moved", foreign, moved)
	}
	if got := attached(t, ns, index, ebpf.AttachTCXIngress); len(got) != 2 || got[0] != ours {
		t.Errorf("egw_from_pod is not first again: %v (it is %d)", got, ours)
	}
	if query(); len(foreign) != 1 || moved {
		t.Errorf("asked again: foreign %v, moved %v; want the same program, not moved", foreign, moved)
	}
	if err := cni.Close(); err != nil {
		t.Fatal(err)
	}
	if query(); len(foreign) != 0 {
		t.Errorf("after the CNI's program went: foreign %v", foreign)
	}
	if got := attached(t, ns, index, ebpf.AttachTCXIngress); !slices.Equal(got, []ebpf.ProgramID{ours}) {
		t.Errorf("after the CNI's program went: %v, want egw_from_pod alone", got)
	}
}
