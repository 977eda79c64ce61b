package bpf

import (
	"errors"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// podVeth creates a veth pair in ns with a fixed ifindex on the host side, as the CNI
// would for a pod: "host" gets the program, frames written to "pod" arrive on it.
func podVeth(t *testing.T, ns string, index int) {
	t.Helper()
	sh(t, "ip", "-n", ns, "link", "add", "host", "index", strconv.Itoa(index), "type", "veth", "peer", "name", "pod")
	for _, dev := range []string{"host", "pod"} {
		sh(t, "ip", "-n", ns, "link", "set", dev, "up")
	}
}

// sendFrame writes a raw Ethernet frame to an interface of ns, as a pod can.
func sendFrame(t testing.TB, ns, dev string, frame []byte) {
	t.Helper()
	idx := ifindex(t, ns, dev)
	inNetns(t, ns, func() {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		if err := unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: idx}); err != nil {
			t.Fatalf("sending a frame on %s: %v", dev, err)
		}
	})
}

// TestVeth runs egw_from_pod on a real veth, including a frame too short for its
// IPv4 header, which BPF_PROG_TEST_RUN refuses to build, and the link's life cycle.
func TestVeth(t *testing.T) {
	ns := newNetns(t, "veth")
	const index = 4242
	podVeth(t, ns, index)
	d := load(t)
	if err := d.Sync(classifyTable(t)); err != nil {
		t.Fatal(err)
	}
	own := []netip.Addr{netip.MustParseAddr("198.18.1.10")}
	inNetns(t, ns, func() {
		for range 2 { // The second is a no-op.
			if err := d.AttachPod(index, own); err != nil {
				t.Fatal(err)
			}
		}
	})
	if got := attached(t, ns, index, ebpf.AttachTCXIngress); !slices.Equal(got, []ebpf.ProgramID{programID(t, d.objs.EgwFromPod)}) {
		t.Fatalf("programs on the veth's tcx ingress: %v, want egw_from_pod alone", got)
	}

	tests := []struct {
		name     string
		frame    []byte
		wantStat string
	}{
		{name: "a steered packet", frame: ipv4Packet("198.18.1.10", "203.0.113.5", protoTCP), wantStat: "from_pod_steer"},
		{name: "a frame too short for an IPv4 header drops", frame: ether(0x0800, []byte{0x45, 0, 0, 10, 0, 0, 0, 0, 64, 6}), wantStat: "from_pod_malformed"},
		{name: "IPv6 passes", frame: ipv6Packet(), wantStat: "from_pod_not_ipv4"},
		// 198.18.1.11 is a pod the table knows, and selects for another egress IP.
		{name: "another pod's source drops", frame: ipv4Packet("198.18.1.11", "203.0.113.130", protoUDP), wantStat: "from_pod_drop_spoofed"},
		{name: "an address of no pod drops", frame: ipv4Packet("198.18.1.99", "203.0.113.5", protoTCP), wantStat: "from_pod_drop_spoofed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := stats(t, d)
			sendFrame(t, ns, "pod", tt.frame)
			if !eventually(func() bool { return stats(t, d)[tt.wantStat] > before[tt.wantStat] }) {
				t.Fatalf("%s did not move within 3s: %v", tt.wantStat, diff(before, stats(t, d)))
			}
			if got := diff(before, stats(t, d)); !maps.Equal(got, one(tt.wantStat)) {
				t.Errorf("counters moved %v, want %v", got, one(tt.wantStat))
			}
		})
	}

	t.Run("a new source replaces the old one", func(t *testing.T) {
		renumbered := []netip.Addr{netip.MustParseAddr("198.18.1.12")}
		inNetns(t, ns, func() {
			if err := d.AttachPod(index, renumbered); err != nil {
				t.Fatal(err)
			}
		})
		if got, err := d.PodSources(); err != nil || !maps.EqualFunc(got, map[int][]netip.Addr{index: renumbered}, slices.Equal) {
			t.Errorf("sources %v, %v; want %d: %v", got, err, index, renumbered)
		}
		before := stats(t, d)
		sendFrame(t, ns, "pod", ipv4Packet("198.18.1.10", "203.0.113.5", protoTCP))
		if !eventually(func() bool { return stats(t, d)["from_pod_drop_spoofed"] > before["from_pod_drop_spoofed"] }) {
			t.Errorf("the old source was not dropped: %v", diff(before, stats(t, d)))
		}
	})

	t.Run("a link whose veth is gone is reported, and replaced or detached", func(t *testing.T) {
		sh(t, "ip", "-n", ns, "link", "del", "host")
		if got, err := d.AttachedPods(); err != nil || !slices.Equal(got, []int{index}) {
			t.Fatalf("AttachedPods after the veth went: %v, %v; want [%d]", got, err, index)
		}
		podVeth(t, ns, index) // The same ifindex, another interface.
		inNetns(t, ns, func() {
			if err := d.AttachPod(index, own); err != nil {
				t.Fatal(err)
			}
		})
		if got := attached(t, ns, index, ebpf.AttachTCXIngress); len(got) != 1 {
			t.Fatalf("programs on the new veth: %v, want egw_from_pod", got)
		}
		if err := d.DetachPod(index); err != nil {
			t.Fatal(err)
		}
		if got := attached(t, ns, index, ebpf.AttachTCXIngress); len(got) != 0 {
			t.Errorf("programs after DetachPod: %v, want none", got)
		}
		if got, err := d.AttachedPods(); err != nil || len(got) != 0 {
			t.Errorf("AttachedPods after DetachPod: %v, %v; want none", got, err)
		}
		if got, err := d.PodSources(); err != nil || len(got) != 0 {
			t.Errorf("sources after DetachPod: %v, %v; want none", got, err)
		}
		if err := d.DetachPod(index); err != nil {
			t.Errorf("detaching twice: %v", err)
		}
	})
}

// TestRestart closes a loaded dataplane without uninstalling it, as an exiting agent
// does, and loads it again: the same links now run the new programs, and the maps
// kept what they held. Uninstall then leaves nothing.
func TestRestart(t *testing.T) {
	ns := newNetns(t, "restart")
	const index = 4243
	podVeth(t, ns, index)
	sh(t, "ip", "-n", ns, "link", "add", "uplink", "type", "veth", "peer", "name", "uplinkpeer")
	uplink := ifindex(t, ns, "uplink")
	dir := newPinDir(t)

	first, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	tbl := classifyTable(t)
	// A floating IP no route steers to: the pods' packets are steered, not SNATed here.
	floating := netip.MustParseAddr("198.51.100.199")
	if err := first.Sync(tbl); err != nil {
		t.Fatal(err)
	}
	if err := first.SetGrant(floating, 7, monotonicNow()+time.Hour); err != nil {
		t.Fatal(err)
	}
	inNetns(t, ns, func() {
		if err := first.AttachPod(index, []netip.Addr{netip.MustParseAddr("198.18.1.10")}); err != nil {
			t.Fatal(err)
		}
		if err := first.AttachUplink(uplink); err != nil {
			t.Fatal(err)
		}
	})
	sendFrame(t, ns, "pod", ipv4Packet("198.18.1.10", "203.0.113.5", protoTCP))
	if !eventually(func() bool { return stats(t, first)["from_pod_steer"] == 1 }) {
		t.Fatal("the attached program did not count the packet")
	}
	linksBefore := pinnedLinkIDs(t, dir)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	second, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { second.Close() })
	if got := pinnedLinkIDs(t, dir); !maps.Equal(got, linksBefore) {
		t.Errorf("links after the restart %v, want the same links %v", got, linksBefore)
	}
	for _, c := range []struct {
		dev  int
		typ  ebpf.AttachType
		prog *ebpf.Program
	}{
		{index, ebpf.AttachTCXIngress, second.objs.EgwFromPod},
		{uplink, ebpf.AttachTCXIngress, second.objs.EgwUplinkIn},
		{uplink, ebpf.AttachTCXEgress, second.objs.EgwUplinkOut},
	} {
		if got, want := attached(t, ns, c.dev, c.typ), []ebpf.ProgramID{programID(t, c.prog)}; !slices.Equal(got, want) {
			t.Errorf("interface %d %s runs %v, want the new %s %v", c.dev, c.typ, got, c.prog, want)
		}
	}
	holdsExactly(t, second, tbl)
	if got, err := second.Grants(); err != nil || !maps.Equal(got, map[netip.Addr]uint32{floating: 7}) {
		t.Errorf("grants after the restart: %v, %v; want %s with SNAT id 7", got, err, floating)
	}
	if got := stats(t, second)["from_pod_steer"]; got != 1 {
		t.Errorf("from_pod_steer after the restart: %d, want the 1 counted before", got)
	}
	before := second.writes
	if err := second.Sync(tbl); err != nil || second.writes != before {
		t.Errorf("syncing the same table after the restart: %v, %d writes; want none", err, second.writes-before)
	}

	if err := Uninstall(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the pin directory is still there: %v", err)
	}
	for _, c := range []struct {
		dev int
		typ ebpf.AttachType
	}{{index, ebpf.AttachTCXIngress}, {uplink, ebpf.AttachTCXIngress}, {uplink, ebpf.AttachTCXEgress}} {
		if got := attached(t, ns, c.dev, c.typ); len(got) != 0 {
			t.Errorf("interface %d %s still runs %v after Uninstall", c.dev, c.typ, got)
		}
	}
}

// pinnedLinkIDs maps each link pinned under dir to its kernel id.
func pinnedLinkIDs(t *testing.T, dir string) map[string]link.ID {
	t.Helper()
	names, err := pinnedLinks(filepath.Join(dir, linksDir))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]link.ID{}
	for _, name := range names {
		l, err := link.LoadPinnedLink(filepath.Join(dir, linksDir, name), nil)
		if err != nil {
			t.Fatal(err)
		}
		info, err := l.Info()
		l.Close()
		if err != nil {
			t.Fatal(err)
		}
		out[name] = info.ID
	}
	if len(out) != 3 {
		t.Fatalf("pinned links %v, want a pod's, uplink-in and uplink-out", out)
	}
	return out
}
