package bpf

import (
	"maps"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/egressgw/egressgw/apiserver/egress"
)

// tunnelDevices creates egw0 in the source and gateway namespaces, and in the source
// the routes that lead into it: steered packets by mark (table 2640, as the agent
// does), and 203.0.113.128/25 without one. egw0 is ipip in external mode, as the agent
// makes it; on a kernel without ipip (CONFIG_NET_IPIP), VXLAN in external mode, which
// carries its tunnel key the same way, so the programs run the same paths.
func tunnelDevices(t *testing.T, src, gw string) string {
	out, err := runCmd("ip", "-n", src, "link", "add", "egw0", "type", "ipip", "external")
	switch {
	case err == nil:
		sh(t, "ip", "-n", gw, "link", "add", "egw0", "type", "ipip", "external")
		for _, ns := range []string{src, gw} {
			sh(t, "ip", "-n", ns, "link", "set", "egw0", "up")
		}
		sh(t, "ip", "-n", src, "route", "add", "default", "dev", "egw0", "table", "2640")
		sh(t, "ip", "-n", src, "route", "add", "203.0.113.128/25", "dev", "egw0")
		return "ipip"
	case !strings.Contains(out, "Unknown device type"):
		t.Fatalf("creating an ipip device: %v: %s", err, out)
	}
	// VXLAN carries Ethernet: the source sends to a fixed neighbour, which is the
	// gateway's egw0, so that no ARP goes through the tunnel.
	const gwMAC, srcMAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
	for ns, mac := range map[string]string{src: srcMAC, gw: gwMAC} {
		sh(t, "ip", "-n", ns, "link", "add", "egw0", "address", mac, "type", "vxlan", "dstport", "4789", "external")
		sh(t, "ip", "-n", ns, "link", "set", "egw0", "up")
	}
	sh(t, "ip", "-n", src, "neigh", "add", "203.0.113.254", "lladdr", gwMAC, "dev", "egw0", "nud", "permanent")
	sh(t, "ip", "-n", src, "route", "add", "default", "via", "203.0.113.254", "dev", "egw0", "onlink", "table", "2640")
	sh(t, "ip", "-n", src, "route", "add", "203.0.113.128/25", "via", "203.0.113.254", "dev", "egw0", "onlink")
	return "vxlan"
}

func runCmd(args ...string) (string, error) {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	return string(out), err
}

func monotonicNow() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	return time.Duration(ts.Nano())
}

// TestTunnel sends packets from a source namespace through egw_tunnel_out and a real
// tunnel to a gateway namespace, where egw_tunnel_in marks them for SNAT only under a
// valid grant: an nft rule there counts packets carrying exactly the SNAT mark.
func TestTunnel(t *testing.T) {
	src, gw := newNetns(t, "src"), newNetns(t, "gw")
	sh(t, "ip", "link", "add", "uplink", "netns", src, "type", "veth", "peer", "name", "uplink", "netns", gw)
	sh(t, "ip", "-n", src, "addr", "add", "198.51.100.2/24", "dev", "uplink")
	sh(t, "ip", "-n", gw, "addr", "add", "198.51.100.1/24", "dev", "uplink")
	sh(t, "ip", "-n", gw, "addr", "add", "198.51.100.100/24", "dev", "uplink") // the floating IP
	for _, ns := range []string{src, gw} {
		sh(t, "ip", "-n", ns, "link", "set", "uplink", "up")
	}
	kind := tunnelDevices(t, src, gw)
	t.Logf("tunnel: %s", kind)
	sh(t, "ip", "-n", src, "rule", "add", "fwmark", "0xe0000000/0xf0000000", "lookup", "2640")
	const snatID = 5
	nft := `table ip egwtest {
		counter granted {}
		chain pre {
			type filter hook prerouting priority 0; policy accept;
			iifname "egw0" meta mark 0xd0050000 counter name "granted"
		}
	}`
	cmd := exec.Command("ip", "netns", "exec", gw, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(nft)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}

	dSrc, dGw := load(t), load(t)
	srcTunnel, gwTunnel := ifindex(t, src, "egw0"), ifindex(t, gw, "egw0")
	inNetns(t, src, func() {
		if err := dSrc.AttachTunnel(srcTunnel); err != nil {
			t.Fatal(err)
		}
	})
	inNetns(t, gw, func() {
		if err := dGw.AttachTunnel(gwTunnel); err != nil {
			t.Fatal(err)
		}
	})
	tbl := build(t, egress.NewTableBuilder(), compile(pol{name: "web", dests: []string{"203.0.113.0/25"}, egressIP: "198.51.100.100"}), pod("198.18.1.10", "web"))
	if err := dSrc.Sync(tbl); err != nil {
		t.Fatal(err)
	}
	steer := markSteer | egressIDOf(t, tbl, "198.51.100.100")<<markIDShift
	floating := netip.MustParseAddr("198.51.100.100")

	tests := []struct {
		name        string
		grant       func() error
		mark        uint32
		dst         string
		wantSrc     string // the counter that moves by one in the source, if any
		wantGw      string // and in the gateway
		wantGranted uint64
	}{
		{name: "a valid grant: the gateway marks for SNAT",
			grant: func() error { return dGw.SetGrant(floating, snatID, monotonicNow()+time.Hour) },
			mark:  steer | 0x42, dst: "203.0.113.5", wantSrc: "tunnel_out_encap", wantGw: "tunnel_in_snat", wantGranted: 1},
		{name: "an expired grant drops",
			grant: func() error { return dGw.SetGrant(floating, snatID, monotonicNow()-time.Second) },
			mark:  steer, dst: "203.0.113.5", wantSrc: "tunnel_out_encap", wantGw: "tunnel_in_expired"},
		{name: "no grant drops",
			grant: func() error { return dGw.DeleteGrant(floating) },
			mark:  steer, dst: "203.0.113.5", wantSrc: "tunnel_out_encap", wantGw: "tunnel_in_no_grant"},
		{name: "an egress id with no IP drops at the source",
			grant: func() error { return dGw.SetGrant(floating, snatID, monotonicNow()+time.Hour) },
			mark:  markSteer | 0xFFF<<markIDShift, dst: "203.0.113.5", wantSrc: "tunnel_out_no_egress_ip"},
		{name: "an unsteered packet routed into egw0 drops at the source",
			grant: func() error { return nil },
			mark:  0, dst: "203.0.113.130", wantSrc: "tunnel_out_not_marked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.grant(); err != nil {
				t.Fatal(err)
			}
			granted := nftCounter(t, gw, "granted")
			srcBefore, gwBefore := stats(t, dSrc), stats(t, dGw)
			inNetns(t, src, func() { sendUDP(t, tt.dst, tt.mark) })
			moved := func(d *Dataplane, before map[string]uint64, name string) bool {
				return name == "" || stats(t, d)[name] > before[name]
			}
			if !eventually(func() bool { return moved(dSrc, srcBefore, tt.wantSrc) && moved(dGw, gwBefore, tt.wantGw) }) {
				t.Fatalf("counters did not move within 3s: source %v, gateway %v", diff(srcBefore, stats(t, dSrc)), diff(gwBefore, stats(t, dGw)))
			}
			if got, want := diff(srcBefore, stats(t, dSrc)), one(tt.wantSrc); !maps.Equal(got, want) {
				t.Errorf("source counters moved %v, want %v", got, want)
			}
			if got, want := diff(gwBefore, stats(t, dGw)), one(tt.wantGw); !maps.Equal(got, want) {
				t.Errorf("gateway counters moved %v, want %v", got, want)
			}
			if got := nftCounter(t, gw, "granted") - granted; got != tt.wantGranted {
				t.Errorf("%d packets reached the gateway's netfilter with SNAT mark 0xd0050000, want %d", got, tt.wantGranted)
			}
		})
	}
}

// sendUDP sends one datagram with the socket mark set, as a steered pod packet leaves
// the source node's routing: the mark chooses table 2640 and egw0.
func sendUDP(t testing.TB, dst string, mark uint32) {
	t.Helper()
	dialer := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark)) })
		if err != nil {
			return err
		}
		return serr
	}}
	conn, err := dialer.Dial("udp4", net.JoinHostPort(dst, "9"))
	if err != nil {
		t.Fatalf("dialing %s with mark %#x: %v", dst, mark, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("egressgw")); err != nil {
		t.Fatalf("sending to %s with mark %#x: %v", dst, mark, err)
	}
}

func stats(t testing.TB, d *Dataplane) map[string]uint64 {
	t.Helper()
	s, err := d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func diff(before, after map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for name, n := range after {
		if n != before[name] {
			out[name] = n - before[name]
		}
	}
	return out
}

func one(name string) map[string]uint64 {
	if name == "" {
		return map[string]uint64{}
	}
	return map[string]uint64{name: 1}
}
