package nodeagent

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

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

func TestHostTunnelAndRules(t *testing.T) {
	inNetns(t, func(ns string) {
		h := linuxHost{tunnel: "egw0", port: 4788}
		for range 2 { // idempotent
			if _, err := h.EnsureTunnel(); err != nil {
				t.Errorf("EnsureTunnel: %v", err)
				return
			}
		}
		if err := h.ApplyNftables(nftState{SNAT: map[uint32]netip.Addr{1: netip.MustParseAddr("198.51.100.100")}}); err != nil {
			t.Errorf("ApplyNftables: %v", err)
		}
		link := run(t, ns, "ip", "-d", "addr", "show", "egw0")
		for _, want := range []string{"vxlan", "external", "dstport 4788", "NOARP", "UP", "169.254.88.1/32"} {
			if !strings.Contains(link, want) {
				t.Errorf("egw0 lacks %q: %s", want, link)
			}
		}
		rules := run(t, ns, "ip", "rule")
		if !strings.Contains(rules, "2640:\tfrom all fwmark 0xe0000000/0xf0000000 lookup 2640") ||
			!strings.Contains(rules, "2641:\tfrom all fwmark 0xe0000000/0xf0000000 blackhole") {
			t.Errorf("rules: %s", rules)
		}
		if got := run(t, ns, "ip", "route", "show", "table", "2640"); !strings.Contains(got, "default dev egw0") {
			t.Errorf("table 2640: %s", got)
		}
		if got := run(t, ns, "cat", "/proc/sys/net/ipv4/conf/egw0/rp_filter"); strings.TrimSpace(got) != "2" {
			t.Errorf("rp_filter on egw0 is %s", got)
		}
		if got := run(t, ns, "nft", "list", "map", "ip", "egressgw", "snat_ips"); !strings.Contains(got, "0xd0010000 : 198.51.100.100") {
			t.Errorf("snat map: %s", got)
		}
		if err := RemoveHost("egw0"); err != nil {
			t.Errorf("RemoveHost: %v", err)
		}
		if got := run(t, ns, "ip", "rule"); strings.Contains(got, "2640") {
			t.Errorf("rules left after removal: %s", got)
		}
		if out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "table", "ip", "egressgw").CombinedOutput(); err == nil {
			t.Errorf("nft table left after removal: %s", out)
		}
		if out, err := exec.Command("ip", "netns", "exec", ns, "ip", "link", "show", "egw0").CombinedOutput(); err == nil {
			t.Errorf("egw0 left after removal: %s", out)
		}
	})
}
