package nodeagent

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/egressgw/egressgw/test/testenv"
)

// inNetns runs f on a thread inside a fresh network namespace, which is deleted after.
// The thread is never returned to the runtime, so no other goroutine runs in the netns.
func inNetns(t *testing.T, f func(name string)) {
	t.Helper()
	testenv.RequireRoot(t, "network namespaces, nftables")
	name := fmt.Sprintf("egwhost-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		ns, err := netns.GetFromName(name)
		if err != nil {
			t.Errorf("opening netns: %v", err)
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			t.Errorf("entering netns: %v", err)
			return
		}
		f(name)
	}()
	<-done
}

func run(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	if err != nil {
		t.Errorf("%v: %v: %s", args, err, out)
	}
	return string(out)
}

// TestHostSteering: the rules lead steered packets to table 2640 (a blackhole behind),
// whose route leaves by the chosen uplink through a next hop with a permanent neighbour;
// moving to another uplink moves the neighbour; RemoveHost leaves none of it.
func TestHostSteering(t *testing.T) {
	inNetns(t, func(ns string) {
		for _, args := range [][]string{
			{"link", "add", "up1", "type", "veth", "peer", "name", "up2"},
			{"link", "set", "up1", "up"}, {"link", "set", "up2", "up"}, {"link", "set", "lo", "up"},
			{"addr", "add", "198.51.100.11/24", "dev", "up1"},
		} {
			run(t, ns, append([]string{"ip"}, args...)...)
		}
		run(t, ns, "sysctl", "-qw", "net.ipv4.conf.up1.rp_filter=1", "net.ipv4.conf.up2.rp_filter=0")
		up1, up2 := linkIndex(t, "up1"), linkIndex(t, "up2")
		h := linuxHost{}
		if u, err := h.Uplink("up1"); err != nil || u.Ifindex != up1 || len(u.MAC) != 6 {
			t.Errorf("Uplink(up1) = %+v, %v; want index %d and its MAC", u, err, up1)
		}
		for range 2 { // idempotent
			if err := h.EnsureSteering(up1, []int{up1, up2}); err != nil {
				t.Errorf("EnsureSteering: %v", err)
				return
			}
		}
		if err := h.ApplyNftables(nftState{SNAT: map[uint32]netip.Addr{1: netip.MustParseAddr("198.51.100.100")}}); err != nil {
			t.Errorf("ApplyNftables: %v", err)
		}
		// The writer's repair relies on two listings of an untouched table being equal,
		// and on a flushed one listing empty.
		if a, err := h.ListNftables(); err != nil || a == "" {
			t.Errorf("ListNftables = %q, %v; want the table", a, err)
		} else if b, _ := h.ListNftables(); !sameListing(a, b) {
			t.Errorf("two listings of an untouched table differ:\n%s\n%s", a, b)
		}
		run(t, ns, "nft", "flush", "ruleset")
		if got, err := h.ListNftables(); err != nil || got != "" {
			t.Errorf("ListNftables after a flush = %q, %v; want empty", got, err)
		}
		if err := h.ApplyNftables(nftState{SNAT: map[uint32]netip.Addr{1: netip.MustParseAddr("198.51.100.100")}}); err != nil {
			t.Errorf("ApplyNftables: %v", err)
		}
		rules := run(t, ns, "ip", "rule")
		if !strings.Contains(rules, "2640:\tfrom all fwmark 0xe0000000/0xf0000000 lookup 2640") ||
			!strings.Contains(rules, "2641:\tfrom all fwmark 0xe0000000/0xf0000000 blackhole") ||
			!strings.Contains(rules, "2642:\tfrom all fwmark 0xf0000000/0xf0000000 lookup 2642") ||
			!strings.Contains(rules, "2643:\tfrom all fwmark 0xf0000000/0xf0000000 blackhole") {
			t.Errorf("rules: %s", rules)
		}
		if got := run(t, ns, "ip", "route", "show", "table", "2640"); !strings.Contains(got, "default via 169.254.88.2 dev up1 onlink") || strings.Contains(got, "mtu") {
			t.Errorf("table 2640: %s", got)
		}
		// The routed way leaves room for its outer header: 1500 - 20.
		if got := run(t, ns, "ip", "route", "show", "table", "2642"); !strings.Contains(got, "default via 169.254.88.2 dev up1 onlink mtu 1480") {
			t.Errorf("table 2642: %s", got)
		}
		// The kernel's route to an egress IP elsewhere, as the routed way uses it.
		run(t, ns, "ip", "route", "add", "198.51.100.128/25", "via", "198.51.100.1", "dev", "up1")
		if r, ok := h.RouteTo(netip.MustParseAddr("198.51.100.200")); !ok || r.Ifindex != up1 || r.Src != netip.MustParseAddr("198.51.100.11") {
			t.Errorf("RouteTo(198.51.100.200) = %+v, %v; want interface %d from 198.51.100.11", r, ok, up1)
		}
		if r, ok := h.RouteTo(netip.MustParseAddr("203.0.113.9")); ok {
			t.Errorf("RouteTo(203.0.113.9) = %+v with no route there; want none", r)
		}
		if got := run(t, ns, "ip", "neigh", "show", "169.254.88.2"); !strings.Contains(got, "dev up1 lladdr 02:65:00:00:00:00 PERMANENT") {
			t.Errorf("the next hop's neighbour: %q", got)
		}
		for dev, want := range map[string]string{"up1": "2", "up2": "0"} { // strict becomes loose; off stays off
			if got := run(t, ns, "cat", "/proc/sys/net/ipv4/conf/"+dev+"/rp_filter"); strings.TrimSpace(got) != want {
				t.Errorf("rp_filter on %s is %s, want %s", dev, got, want)
			}
		}
		if got := run(t, ns, "nft", "list", "map", "ip", "egressgw", "snat_ips"); !strings.Contains(got, "0xd0010000 : 198.51.100.100") {
			t.Errorf("snat map: %s", got)
		}
		if err := h.EnsureSteering(up2, []int{up1, up2}); err != nil {
			t.Errorf("EnsureSteering on another uplink: %v", err)
		}
		if got := run(t, ns, "ip", "neigh", "show", "169.254.88.2"); !strings.Contains(got, "dev up2") || strings.Contains(got, "dev up1") {
			t.Errorf("after moving to up2, the next hop's neighbour: %q", got)
		}
		if got := run(t, ns, "ip", "route", "show", "table", "2640"); !strings.Contains(got, "dev up2") {
			t.Errorf("after moving to up2, table 2640: %s", got)
		}
		if err := RemoveHost(); err != nil {
			t.Errorf("RemoveHost: %v", err)
		}
		if got := run(t, ns, "ip", "rule"); strings.Contains(got, "264") {
			t.Errorf("rules left after removal: %s", got)
		}
		for _, table := range []string{"2640", "2642"} {
			if got := run(t, ns, "ip", "route", "show", "table", table); strings.TrimSpace(got) != "" {
				t.Errorf("table %s left after removal: %s", table, got)
			}
		}
		if got := run(t, ns, "ip", "neigh", "show", "169.254.88.2"); strings.TrimSpace(got) != "" {
			t.Errorf("the next hop's neighbour left after removal: %s", got)
		}
		if out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "table", "ip", "egressgw").CombinedOutput(); err == nil {
			t.Errorf("nft table left after removal: %s", out)
		}
	})
}

func linkIndex(t *testing.T, name string) int {
	t.Helper()
	l, err := net.InterfaceByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l.Index
}

// TestPodLinkBehindABridge: a pod behind a bridge (the bridge plugin's cni0) is found on
// its own port of the bridge, not on the bridge: PodLink asks for its MAC, the bridge
// learns the port, and the next call names that port. A pod on a veth of its own (ptp)
// is found on that veth at once.
func TestPodLinkBehindABridge(t *testing.T) {
	inNetns(t, func(ns string) {
		pod := ns + "-pod"
		if out, err := exec.Command("ip", "netns", "add", pod).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add: %v: %s", err, out)
		}
		defer func() { _ = exec.Command("ip", "netns", "del", pod).Run() }()
		for _, args := range [][]string{
			{"ip", "link", "add", "cni0", "type", "bridge"},
			{"ip", "addr", "add", "198.18.1.1/24", "dev", "cni0"},
			{"ip", "link", "set", "cni0", "up"},
			{"ip", "link", "add", "vethpod", "type", "veth", "peer", "name", "eth0", "netns", pod},
			{"ip", "link", "set", "vethpod", "master", "cni0", "up"},
			{"ip", "-n", pod, "addr", "add", "198.18.1.10/24", "dev", "eth0"},
			{"ip", "-n", pod, "link", "set", "eth0", "up"},
			{"ip", "link", "add", "vethptp", "type", "veth", "peer", "name", "eth1", "netns", pod},
			{"ip", "link", "set", "vethptp", "up"},
			{"ip", "route", "add", "198.18.2.10/32", "dev", "vethptp"},
		} {
			run(t, ns, args...)
		}
		h := linuxHost{}
		port, ptp := linkIndex(t, "vethpod"), linkIndex(t, "vethptp")
		if got, ok := h.PodLink(netip.MustParseAddr("198.18.2.10")); !ok || got != ptp {
			t.Errorf("the ptp pod's link is %d (%v), want its veth %d", got, ok, ptp)
		}
		var got int
		var ok bool
		for range 50 { // the first call asks ARP; the answer takes a moment
			if got, ok = h.PodLink(netip.MustParseAddr("198.18.1.10")); ok {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if !ok || got != port {
			t.Errorf("the bridged pod's link is %d (%v), want its port %d, not the bridge %d", got, ok, port, linkIndex(t, "cni0"))
		}
		if got, ok := h.PodLink(netip.MustParseAddr("198.18.1.99")); ok {
			t.Errorf("an address no pod has is on link %d", got)
		}
	})
}
