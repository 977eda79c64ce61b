package floatingip

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/egressgw/egressgw/apiserver/routing"
)

// These tests run the real kernel: a node netns "n" whose eth0 (198.51.100.11/24) is a
// veth to a peer netns "p" (198.51.100.1/24). The Holder works in "n" through a netlink
// handle and an ARP socket opened there; the test goroutines never change namespace.

func requireRoot(t *testing.T) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "needs root for network namespaces"
	} else if _, err := exec.LookPath("ip"); err != nil {
		why = "needs iproute2's ip"
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(why)
	}
	t.Skip(why)
}

var netSeq atomic.Int32

type testNet struct {
	node, peer string // netns names
	dev        string // the node's interface
	nodeNS     netns.NsHandle
	nodeNL     *netlink.Handle
	peerNL     *netlink.Handle
	nodeMAC    net.HardwareAddr
}

// newTestNet builds the two namespaces, deleted when the test ends however it ends.
func newTestNet(t *testing.T, dev string) *testNet {
	t.Helper()
	requireRoot(t)
	seq := netSeq.Add(1)
	tn := &testNet{
		node: fmt.Sprintf("egwfip-n-%d-%d", os.Getpid(), seq),
		peer: fmt.Sprintf("egwfip-p-%d-%d", os.Getpid(), seq),
		dev:  dev,
	}
	for _, ns := range []string{tn.node, tn.peer} {
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add %s: %v: %s", ns, err, out)
		}
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v: %s", ns, err, out)
			}
		})
	}
	for _, args := range [][]string{
		{"-n", tn.node, "link", "add", dev, "type", "veth", "peer", "name", "eth0", "netns", tn.peer},
		{"-n", tn.node, "addr", "add", "198.51.100.11/24", "dev", dev},
		{"-n", tn.peer, "addr", "add", "198.51.100.1/24", "dev", "eth0"},
		{"-n", tn.node, "link", "set", "lo", "up"},
		{"-n", tn.peer, "link", "set", "lo", "up"},
		{"-n", tn.node, "link", "set", dev, "up"},
		{"-n", tn.peer, "link", "set", "eth0", "up"},
	} {
		tn.ip(t, args...)
	}
	var err error
	if tn.nodeNS, err = netns.GetFromName(tn.node); err != nil {
		t.Fatalf("opening netns %s: %v", tn.node, err)
	}
	t.Cleanup(func() { tn.nodeNS.Close() })
	if tn.nodeNL, err = netlink.NewHandleAt(tn.nodeNS); err != nil {
		t.Fatalf("netlink handle in %s: %v", tn.node, err)
	}
	t.Cleanup(tn.nodeNL.Close)
	peerNS, err := netns.GetFromName(tn.peer)
	if err != nil {
		t.Fatalf("opening netns %s: %v", tn.peer, err)
	}
	t.Cleanup(func() { peerNS.Close() })
	if tn.peerNL, err = netlink.NewHandleAt(peerNS); err != nil {
		t.Fatalf("netlink handle in %s: %v", tn.peer, err)
	}
	t.Cleanup(tn.peerNL.Close)

	deadline := time.Now().Add(3 * time.Second)
	for {
		l, err := tn.nodeNL.LinkByName(dev)
		if err != nil {
			t.Fatalf("finding %s: %v", dev, err)
		}
		if l.Attrs().OperState == netlink.OperUp {
			tn.nodeMAC = l.Attrs().HardwareAddr
			return tn
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is still %v after 3s", dev, l.Attrs().OperState)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (tn *testNet) ip(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// holder is a Holder that works in the node namespace.
func (tn *testNet) holder(t *testing.T, opts Options) *Holder {
	h := newHolder(opts, &linuxKernel{nl: tn.nodeNL, ns: tn.nodeNS})
	t.Cleanup(h.wg.Wait) // before the namespaces go
	return h
}

// kernelAddr is an address as `ip -j addr` reports it: the kernel's word, not ours.
type kernelAddr struct {
	Family    string `json:"family"`
	Local     string `json:"local"`
	PrefixLen int    `json:"prefixlen"`
	Label     string `json:"label"`
	ValidLft  uint32 `json:"valid_life_time"`
}

func (tn *testNet) addrs(t *testing.T) map[string]kernelAddr {
	t.Helper()
	var links []struct {
		AddrInfo []kernelAddr `json:"addr_info"`
	}
	if err := json.Unmarshal([]byte(tn.ip(t, "-j", "-n", tn.node, "addr", "show", "dev", tn.dev)), &links); err != nil {
		t.Fatalf("parsing ip -j addr: %v", err)
	}
	out := map[string]kernelAddr{}
	for _, l := range links {
		for _, a := range l.AddrInfo {
			if a.Family == "inet" {
				out[fmt.Sprintf("%s/%d", a.Local, a.PrefixLen)] = a
			}
		}
	}
	return out
}

const forever = 0xffffffff

// checkNotTouched fails if the node's own address or the foreign, finite one changed.
func (tn *testNet) checkNotTouched(t *testing.T, as map[string]kernelAddr, foreign bool) {
	t.Helper()
	if a, ok := as["198.51.100.11/24"]; !ok || a.ValidLft != forever {
		t.Errorf("the node's own 198.51.100.11/24 is gone or changed: %+v", a)
	}
	if foreign {
		if a, ok := as["198.51.100.50/24"]; !ok || a.ValidLft == 0 || a.ValidLft > 100 {
			t.Errorf("the foreign 198.51.100.50/24 (valid_lft 100) is gone or changed: %+v", a)
		}
	}
}

func TestReconcileInNetns(t *testing.T) {
	tn := newTestNet(t, "eth0")
	tn.ip(t, "-n", tn.node, "addr", "add", "198.51.100.50/24", "dev", "eth0", "valid_lft", "100", "preferred_lft", "100")
	h := tn.holder(t, Options{})
	// Each step runs on the state the previous one left.
	steps := []struct {
		name     string
		want     map[netip.Addr]time.Duration
		wantHeld map[string][2]uint32 // ip/32 → valid_lft in (lo, hi]
		wantErr  []string
		ping     bool
	}{
		{
			name:     "adds a /32 with a finite lifetime that the peer reaches",
			want:     map[netip.Addr]time.Duration{ip("198.51.100.100"): 3 * time.Second},
			wantHeld: map[string][2]uint32{"198.51.100.100/32": {0, 3}},
			ping:     true,
		},
		{
			name:     "refreshes the lifetime",
			want:     map[netip.Addr]time.Duration{ip("198.51.100.100"): 30 * time.Second},
			wantHeld: map[string][2]uint32{"198.51.100.100/32": {3, 30}},
		},
		{
			name: "an IP outside every subnet is an error and the others are reconciled",
			want: map[netip.Addr]time.Duration{
				ip("198.51.100.100"): 20 * time.Second,
				ip("198.51.100.101"): 20 * time.Second,
				ip("203.0.113.5"):    20 * time.Second,
			},
			wantHeld: map[string][2]uint32{"198.51.100.100/32": {3, 20}, "198.51.100.101/32": {3, 20}},
			wantErr:  []string{"203.0.113.5: no interface subnet contains it"},
		},
		{
			name: "removes what is not wanted",
			want: map[netip.Addr]time.Duration{},
		},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			checkErrs(t, h.Reconcile(st.want), st.wantErr)
			as := tn.addrs(t)
			tn.checkNotTouched(t, as, true)
			var got []string
			for k, a := range as {
				if a.PrefixLen == 32 {
					got = append(got, k)
				}
			}
			slices.Sort(got)
			want := slices.Sorted(func(yield func(string) bool) {
				for k := range st.wantHeld {
					if !yield(k) {
						return
					}
				}
			})
			if !slices.Equal(got, want) {
				t.Fatalf("/32s on eth0: %v, want %v", got, want)
			}
			for k, lft := range st.wantHeld {
				a := as[k]
				if a.Label != "eth0:egw" || a.ValidLft <= lft[0] || a.ValidLft > lft[1] {
					t.Errorf("%s: label %q valid_lft %d; want eth0:egw and valid_lft in (%d, %d]", k, a.Label, a.ValidLft, lft[0], lft[1])
				}
			}
			held, err := h.Held()
			if err != nil {
				t.Fatalf("Held: %v", err)
			}
			if len(held) != len(want) {
				t.Errorf("Held() = %v, want %v", held, want)
			}
			if st.ping {
				if out, err := exec.Command("ip", "netns", "exec", tn.peer, "ping", "-c1", "-W2", "198.51.100.100").CombinedOutput(); err != nil {
					t.Errorf("the peer cannot ping 198.51.100.100: %v: %s", err, out)
				}
			}
		})
	}
	ifs, err := h.Interfaces()
	if err != nil {
		t.Fatalf("Interfaces: %v", err)
	}
	if len(ifs) != 1 || ifs[0].Name != "eth0" || ifs[0].MAC != tn.nodeMAC.String() ||
		!slices.Equal(ifs[0].Subnets, []netip.Prefix{pfx("198.51.100.0/24")}) {
		t.Errorf("Interfaces() = %+v, want eth0 %s with 198.51.100.0/24", ifs, tn.nodeMAC)
	}
}

func TestGARPUpdatesPeerNeighbour(t *testing.T) {
	wrong := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}
	tests := []struct {
		name        string
		schedule    []time.Duration
		wantUpdated bool
	}{
		{name: "the first GARP updates a stale entry within 300ms", schedule: nil, wantUpdated: true},
		{name: "without GARP the stale entry stays (control)", schedule: []time.Duration{}, wantUpdated: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tn := newTestNet(t, "eth0")
			tn.ip(t, "-n", tn.peer, "neigh", "replace", "198.51.100.100", "dev", "eth0", "lladdr", wrong.String(), "nud", "stale")
			peerEth0, err := tn.peerNL.LinkByName("eth0")
			if err != nil {
				t.Fatalf("peer eth0: %v", err)
			}
			h := tn.holder(t, Options{GARPSchedule: tt.schedule})

			start := time.Now()
			if err := h.Reconcile(map[netip.Addr]time.Duration{ip("198.51.100.100"): 5 * time.Second}); err != nil {
				t.Fatalf("Reconcile: %v", err)
			}
			returned := time.Since(start)
			// The announcement carries the IP's virtual MAC, not the interface's.
			vmac := routing.VirtualMAC(ip("198.51.100.100"))
			var mac net.HardwareAddr
			var polls int
			for ; polls < 2000 && time.Since(start) < 300*time.Millisecond; polls++ {
				if mac = peerNeighbour(t, tn.peerNL, peerEth0.Attrs().Index, "198.51.100.100"); mac.String() == vmac.String() {
					break
				}
				time.Sleep(500 * time.Microsecond)
			}
			took := time.Since(start)
			updated := mac.String() == vmac.String()
			if updated != tt.wantUpdated {
				t.Fatalf("after %v the peer's entry for 198.51.100.100 is %s (its virtual MAC is %s, stale was %s); want updated: %v",
					took, mac, vmac, wrong, tt.wantUpdated)
			}
			if updated {
				t.Logf("peer's neighbour entry updated %v after Reconcile began (Reconcile took %v, seen at poll %d)", took, returned, polls+1)
			}
			h.wg.Wait()
			if want := uint64(len(h.schedule) * 2); h.Stats() != (Stats{GARPSent: want}) {
				t.Errorf("Stats() = %+v, want %d sent", h.Stats(), want)
			}
		})
	}
}

func peerNeighbour(t *testing.T, nl *netlink.Handle, linkIndex int, ip string) net.HardwareAddr {
	t.Helper()
	ns, err := nl.NeighList(linkIndex, netlink.FAMILY_V4)
	if err != nil {
		t.Fatalf("listing the peer's neighbours: %v", err)
	}
	for _, n := range ns {
		if n.IP.String() == ip {
			return n.HardwareAddr
		}
	}
	return nil
}

func TestRestartInNetns(t *testing.T) {
	tests := []struct {
		name, dev, wantLabel string
	}{
		{name: "short device name", dev: "eth0", wantLabel: "eth0:egw"},
		{name: "15-character device name", dev: "uplink-abcdefgh", wantLabel: "uplink-abcd:egw"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tn := newTestNet(t, tt.dev)
			tn.ip(t, "-n", tn.node, "addr", "add", "198.51.100.50/24", "dev", tt.dev, "valid_lft", "100", "preferred_lft", "100")
			first := tn.holder(t, Options{})
			if err := first.Reconcile(map[netip.Addr]time.Duration{ip("198.51.100.100"): 30 * time.Second, ip("198.51.100.101"): 30 * time.Second}); err != nil {
				t.Fatalf("Reconcile: %v", err)
			}
			if a := tn.addrs(t)["198.51.100.100/32"]; a.Label != tt.wantLabel {
				t.Errorf("label %q, want %q", a.Label, tt.wantLabel)
			}

			second := tn.holder(t, Options{}) // the agent restarted; the kernel kept its state
			held, err := second.Held()
			if err != nil {
				t.Fatalf("Held: %v", err)
			}
			if want := []netip.Addr{ip("198.51.100.100"), ip("198.51.100.101")}; !slices.Equal(held, want) {
				t.Fatalf("after a restart Held() = %v, want %v", held, want)
			}
			if err := second.Reconcile(map[netip.Addr]time.Duration{ip("198.51.100.101"): 10 * time.Second}); err != nil {
				t.Fatalf("Reconcile after restart: %v", err)
			}
			as := tn.addrs(t)
			tn.checkNotTouched(t, as, true)
			if _, ok := as["198.51.100.100/32"]; ok {
				t.Errorf("198.51.100.100/32 is still there after the new holder dropped it")
			}
			if a, ok := as["198.51.100.101/32"]; !ok || a.ValidLft > 10 {
				t.Errorf("198.51.100.101/32 should be kept and refreshed to 10s: %+v (present: %v)", a, ok)
			}

			if err := second.ReleaseAll(); err != nil {
				t.Fatalf("ReleaseAll: %v", err)
			}
			as = tn.addrs(t)
			tn.checkNotTouched(t, as, true)
			if len(as) != 2 {
				t.Errorf("after ReleaseAll the addresses are %v, want only the node's and the foreign one", as)
			}
		})
	}
}

func TestKernelBackstop(t *testing.T) {
	tests := []struct {
		name     string
		lifetime time.Duration
		notUntil time.Duration // the address must outlive this: the lifetime rounded up, less the kernel's 20ms fuzz
		within   time.Duration
	}{
		{name: "1s", lifetime: time.Second, notUntil: 900 * time.Millisecond, within: 10 * time.Second},
		{name: "1.5s rounds up to 2s", lifetime: 1500 * time.Millisecond, notUntil: 1900 * time.Millisecond, within: 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tn := newTestNet(t, "eth0")
			h := tn.holder(t, Options{})
			start := time.Now()
			if err := h.Reconcile(map[netip.Addr]time.Duration{ip("198.51.100.100"): tt.lifetime}); err != nil {
				t.Fatalf("Reconcile: %v", err)
			}
			var gone time.Duration
			for i := 0; i < 1000 && time.Since(start) < tt.within; i++ {
				if _, ok := tn.addrs(t)["198.51.100.100/32"]; !ok {
					gone = time.Since(start)
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			switch {
			case gone == 0:
				t.Fatalf("198.51.100.100/32 with a %v lifetime is still there after %v", tt.lifetime, tt.within)
			case gone < tt.notUntil:
				t.Errorf("198.51.100.100/32 with a %v lifetime was gone after only %v", tt.lifetime, gone)
			}
			t.Logf("the kernel dropped the address %v after it was added with a %v lifetime", gone, tt.lifetime)
			tn.checkNotTouched(t, tn.addrs(t), false)
			if held, err := h.Held(); err != nil || len(held) != 0 {
				t.Errorf("Held() = %v, %v; want nothing", held, err)
			}
		})
	}
}

func TestInterfacesInNetns(t *testing.T) {
	tn := newTestNet(t, "eth0")
	for _, args := range [][]string{
		// A tunnel with a subnet, a pod's host-side veth with only a /32, and a down
		// interface with a subnet: none of them may hold a floating IP.
		// (vxlan: this test kernel has no ipip or gre.)
		{"link", "add", "egwtun", "type", "vxlan", "id", "7", "dstport", "4789", "local", "198.51.100.11", "dev", "eth0"},
		{"addr", "add", "203.0.113.1/24", "dev", "egwtun"},
		{"link", "set", "egwtun", "up"},
		{"link", "add", "vethpod", "type", "veth", "peer", "name", "vethpod-c"},
		{"addr", "add", "169.254.1.1/32", "dev", "vethpod"},
		{"link", "set", "vethpod", "up"},
		{"link", "set", "vethpod-c", "up"},
		{"link", "add", "eth1", "type", "veth", "peer", "name", "eth1-p"},
		{"addr", "add", "203.0.113.11/24", "dev", "eth1"},
		// Routers: the default gateway, and a route through the tunnel (not a candidate).
		{"route", "add", "default", "via", "198.51.100.1", "dev", "eth0"},
		{"route", "add", "10.9.0.0/16", "via", "198.51.100.254", "dev", "eth0"},
		{"route", "add", "10.8.0.0/16", "via", "203.0.113.254", "dev", "egwtun"},
	} {
		tn.ip(t, append([]string{"-n", tn.node}, args...)...)
	}
	tests := []struct {
		name     string
		patterns []string
		want     []string
	}{
		{name: "only the up Ethernet interface with a subnet", want: []string{"eth0 198.51.100.0/24", "eth0 router 198.51.100.1", "eth0 router 198.51.100.254"}},
		{name: "a pattern that matches it", patterns: []string{"eth*"}, want: []string{"eth0 198.51.100.0/24", "eth0 router 198.51.100.1", "eth0 router 198.51.100.254"}},
		{name: "a pattern that does not", patterns: []string{"bond*"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tn.holder(t, Options{Interfaces: tt.patterns})
			ifs, err := h.Interfaces()
			if err != nil {
				t.Fatalf("Interfaces: %v", err)
			}
			var got []string
			for _, i := range ifs {
				for _, s := range i.Subnets {
					got = append(got, i.Name+" "+s.String())
				}
				for _, r := range i.Routers {
					got = append(got, i.Name+" router "+r.String())
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Interfaces() = %v, want %v", got, tt.want)
			}
			// The tunnel's and the down interface's subnets contain it, but they may not hold it.
			checkErrs(t, h.Reconcile(map[netip.Addr]time.Duration{ip("203.0.113.5"): time.Second}),
				[]string{"203.0.113.5: no interface subnet contains it"})
		})
	}
}
