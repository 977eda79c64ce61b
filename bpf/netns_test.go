package bpf

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// newNetns creates a throwaway network namespace, unique to this process, and deletes
// it, with everything in it, when the test ends.
func newNetns(t *testing.T, name string) string {
	t.Helper()
	requireBPF(t)
	ns := fmt.Sprintf("egw-%d-%s", os.Getpid(), name)
	sh(t, "ip", "netns", "add", ns)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("deleting netns %s: %v: %s", ns, err, out)
		}
	})
	// No IPv6 chatter (router solicitations, MLD) from new interfaces to blur counters.
	sh(t, "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	return ns
}

func sh(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// inNetns runs f on a thread in the network namespace ns: interface indexes, tcx
// attachments and sockets then refer to that namespace. Pins do not: bpffs is per mount
// namespace.
func inNetns(t testing.TB, ns string, f func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + ns)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("entering netns %s: %v", ns, err)
	}
	defer func() {
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// The thread stays locked, so the runtime ends it with this goroutine.
			t.Errorf("leaving netns %s: %v", ns, err)
			return
		}
		runtime.UnlockOSThread()
	}()
	f()
}

func ifindex(t testing.TB, ns, name string) int {
	t.Helper()
	var idx int
	inNetns(t, ns, func() {
		iface, err := net.InterfaceByName(name)
		if err != nil {
			t.Fatalf("netns %s: %v", ns, err)
		}
		idx = iface.Index
	})
	return idx
}

// attached lists the programs tcx runs on an interface of ns, in one direction.
func attached(t testing.TB, ns string, ifindex int, typ ebpf.AttachType) []ebpf.ProgramID {
	t.Helper()
	var ids []ebpf.ProgramID
	inNetns(t, ns, func() {
		res, err := link.QueryPrograms(link.QueryOptions{Target: ifindex, Attach: typ})
		if err != nil {
			t.Fatalf("querying tcx programs on interface %d: %v", ifindex, err)
		}
		for _, p := range res.Programs {
			ids = append(ids, p.ID)
		}
	})
	return ids
}

func programID(t testing.TB, p *ebpf.Program) ebpf.ProgramID {
	t.Helper()
	info, err := p.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, ok := info.ID()
	if !ok {
		t.Fatal("the kernel does not report program ids")
	}
	return id
}

// nftCounter reads a named counter of table ip egwtest in ns.
func nftCounter(t testing.TB, ns, name string) uint64 {
	t.Helper()
	out := sh(t, "ip", "netns", "exec", ns, "nft", "-j", "list", "counter", "ip", "egwtest", name)
	var doc struct {
		Nftables []struct {
			Counter *struct{ Packets uint64 } `json:"counter"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("parsing nft output %q: %v", out, err)
	}
	for _, o := range doc.Nftables {
		if o.Counter != nil {
			return o.Counter.Packets
		}
	}
	t.Fatalf("no counter %s in %s", name, out)
	return 0
}

// eventually polls cond every 20ms for at most 3s.
func eventually(cond func() bool) bool {
	for range 150 {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cond()
}
