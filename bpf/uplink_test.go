package bpf

import (
	"bytes"
	"encoding/binary"
	"maps"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/egressgw/egressgw/apiserver/routing"
)

func monotonicNow() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	return time.Duration(ts.Nano())
}

const retRedirect = uint32(7) // TC_ACT_REDIRECT

func pkt0() []byte { return ipv4Packet("198.18.1.10", "203.0.113.5", protoTCP) }

// runFrame runs prog on one frame with skb->mark set to mark, and returns its return
// code, the mark and the frame it left.
func runFrame(t testing.TB, prog *ebpf.Program, pkt []byte, mark uint32) (uint32, uint32, []byte) {
	t.Helper()
	ctx := make([]byte, skbSize(t))
	binary.NativeEndian.PutUint32(ctx[skbMarkOffset:], mark)
	ctxOut, out := make([]byte, len(ctx)), make([]byte, len(pkt)+256)
	opts := &ebpf.RunOptions{Data: pkt, DataOut: out, Context: ctx, ContextOut: ctxOut}
	ret, err := prog.Run(opts)
	if err != nil {
		t.Fatalf("running %s: %v", prog, err)
	}
	return ret, binary.NativeEndian.Uint32(ctxOut[skbMarkOffset:]), opts.DataOut
}

// withDst is pkt addressed to mac.
func withDst(pkt []byte, mac net.HardwareAddr) []byte {
	out := bytes.Clone(pkt)
	copy(out[0:6], mac)
	return out
}

// TestUplinkOut runs egw_uplink_out on every path: a steered packet leaves for its
// egress IP's virtual MAC, by the uplink on the IP's subnet; a packet marked for SNAT
// leaves only with the egress IP its snat id is granted; a selected pod's packet that
// never went through egw_from_pod (no mark) does not leave; ARP claims of floating IPs
// carry the virtual MAC while the grant is valid and do not leave once it lapses;
// everything else passes untouched.
func TestUplinkOut(t *testing.T) {
	d := load(t)
	tbl := build(t, routing.NewTableBuilder(), compile(
		pol{name: "web", dests: []string{"203.0.113.0/26"}, egressIP: "198.51.100.100"},
		pol{name: "db", dests: []string{"203.0.113.64/26"}, egressIP: "198.51.100.101"},
		pol{name: "far", dests: []string{"203.0.113.128/26"}, egressIP: "192.168.1.1"},
	), pod("198.18.1.10", "web", "db", "far"))
	if err := d.Sync(tbl); err != nil {
		t.Fatal(err)
	}
	web, db, far := egressIDOf(t, tbl, "198.51.100.100"), egressIDOf(t, tbl, "198.51.100.101"), egressIDOf(t, tbl, "192.168.1.1")
	valid, lapsed := netip.MustParseAddr("198.51.100.100"), netip.MustParseAddr("198.51.100.101")
	// The program runs on the loopback device (ifindex 1) under BPF_PROG_TEST_RUN: web's
	// IP is on its subnet, db's on another interface's, far's on none.
	other := net.HardwareAddr{0x02, 0xaa, 0, 0, 0, 0x07}
	if err := d.SetUplinks(map[netip.Addr]Uplink{valid: {Ifindex: 1, MAC: net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}}, lapsed: {Ifindex: 7, MAC: other}}); err != nil {
		t.Fatal(err)
	}
	redirected := withDst(pkt0(), routing.VirtualMAC(lapsed))
	copy(redirected[6:12], other)
	if err := d.SetGrant(valid, 1, monotonicNow()+time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := d.SetGrant(lapsed, 2, monotonicNow()-time.Millisecond); err != nil {
		t.Fatal(err)
	}
	pkt := pkt0()
	snated := ipv4Packet(valid.String(), "203.0.113.5", protoTCP)
	arpValid := arpPacket(2, valid)
	copy(arpValid[6:12], routing.VirtualMAC(valid))  // the frame's source
	copy(arpValid[22:28], routing.VirtualMAC(valid)) // the sender hardware address

	tests := []struct {
		name     string
		pkt      []byte
		mark     uint32
		wantRet  uint32
		wantMark uint32 // checked unless the packet is dropped
		wantPkt  []byte // nil: unchanged
		wantStat string
	}{
		{name: "steered: to the egress IP's virtual MAC, our mark bits cleared", pkt: pkt, mark: markSteer | web<<16 | 0x1234,
			wantRet: retNext, wantMark: 0x1234, wantPkt: withDst(pkt, routing.VirtualMAC(valid)), wantStat: "uplink_out_steer"},
		{name: "steered to an IP on another uplink's subnet: that IP's virtual MAC, from that uplink, redirected there", pkt: pkt, mark: markSteer | db<<16,
			wantRet: retRedirect, wantPkt: redirected, wantStat: "uplink_out_steer"},
		{name: "steered to an IP on no uplink's subnet: dropped", pkt: pkt, mark: markSteer | far<<16,
			wantRet: retDrop, wantStat: "uplink_out_no_uplink"},
		{name: "steered to an egress id with no IP: dropped", pkt: pkt, mark: markSteer | 0xFFF<<16,
			wantRet: retDrop, wantStat: "uplink_out_no_egress_ip"},
		{name: "unmarked IPv4, masqueraded to the node's IP, passes untouched", pkt: ipv4Packet("198.51.100.11", "203.0.113.5", protoTCP), mark: 0x1234,
			wantRet: retNext, wantMark: 0x1234},
		{name: "unmarked, from a selected pod to its policy's destination: it bypassed egw_from_pod, dropped", pkt: pkt, mark: 0x1234,
			wantRet: retDrop, wantStat: "uplink_out_bypassed"},
		{name: "unmarked, from a selected pod to a destination no policy of it has: passes", pkt: ipv4Packet("198.18.1.10", "203.0.113.200", protoTCP), mark: 0x1234,
			wantRet: retNext, wantMark: 0x1234},
		{name: "unmarked, from a pod the node does not know: passes (the nft backstop's)", pkt: ipv4Packet("198.18.1.99", "203.0.113.5", protoTCP),
			wantRet: retNext},
		{name: "classified, unsteered IPv4 passes untouched", pkt: pkt, mark: markClassified | web<<16,
			wantRet: retNext, wantMark: markClassified | web<<16},
		{name: "SNAT-marked, SNATed to the IP its snat id is granted: passes untouched", pkt: snated, mark: markSNAT | 1<<16,
			wantRet: retNext, wantMark: markSNAT | 1<<16},
		{name: "SNAT-marked, still the pod's IP (the nft table was flushed): dropped", pkt: pkt, mark: markSNAT | 1<<16,
			wantRet: retDrop, wantStat: "uplink_out_not_snated"},
		{name: "SNAT-marked, SNATed to another snat id's IP: dropped", pkt: snated, mark: markSNAT | 2<<16,
			wantRet: retDrop, wantStat: "uplink_out_not_snated"},
		{name: "SNAT-marked, from an IP this node holds no grant for: dropped", pkt: ipv4Packet("198.51.100.200", "203.0.113.5", protoTCP), mark: markSNAT | 1<<16,
			wantRet: retDrop, wantStat: "uplink_out_not_snated"},
		{name: "IPv6 with a steer mark passes untouched", pkt: ipv6Packet(), mark: markSteer | web<<16,
			wantRet: retNext, wantMark: markSteer | web<<16},
		{name: "ARP for a valid grant: claimed with the virtual MAC", pkt: arpPacket(2, valid),
			wantRet: retNext, wantPkt: arpValid, wantStat: "arp_virtual_mac"},
		{name: "ARP reply for a lapsed grant: dropped", pkt: arpPacket(2, lapsed),
			wantRet: retDrop, wantStat: "arp_lapsed_grant"},
		{name: "gratuitous ARP for a lapsed grant: dropped", pkt: arpPacket(1, lapsed),
			wantRet: retDrop, wantStat: "arp_lapsed_grant"},
		{name: "ARP for the node's own address passes untouched", pkt: arpPacket(2, netip.MustParseAddr("198.51.100.2")),
			wantRet: retNext},
		{name: "IPv4 from a lapsed floating IP (not ARP) passes", pkt: ipv4Packet(lapsed.String(), "203.0.113.10", protoUDP),
			wantRet: retNext},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ret, mark uint32
			var out []byte
			delta := statsDelta(t, d, func() { ret, mark, out = runFrame(t, d.objs.EgwUplinkOut, tt.pkt, tt.mark) })
			if ret != tt.wantRet {
				t.Errorf("returned %#x, want %#x", ret, tt.wantRet)
			}
			if tt.wantRet != retDrop && mark != tt.wantMark {
				t.Errorf("mark %#08x, want %#08x", mark, tt.wantMark)
			}
			want := tt.wantPkt
			if want == nil {
				want = tt.pkt
			}
			if tt.wantRet != retDrop && !bytes.Equal(out, want) {
				t.Errorf("frame\n%x\nwant\n%x", out, want)
			}
			if want := one(tt.wantStat); !maps.Equal(delta, want) {
				t.Errorf("counters moved %v, want %v", delta, want)
			}
		})
	}
}

// TestUplinkIn runs egw_uplink_in on every path. Frames to a floating IP's virtual MAC
// are taken in only for an IP this node holds; steered ones are marked for SNAT only
// while the grant is valid, and only from a pod CIDR to one of the IP's own policy
// destinations: a host on the node segment that routes its traffic via the egress IP
// (ip route add <partner> via <egress IP>) is not relayed as the egress IP.
func TestUplinkIn(t *testing.T) {
	d := load(t)
	valid, lapsed, other := netip.MustParseAddr("198.51.100.100"), netip.MustParseAddr("198.51.100.101"), netip.MustParseAddr("198.51.100.102")
	second := netip.MustParseAddr("198.51.100.103")
	if err := d.SetGrant(valid, 5, monotonicNow()+time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := d.SetGrant(lapsed, 6, monotonicNow()-time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := d.SetGrant(second, 7, monotonicNow()+time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := d.SetPodCIDRs([]netip.Prefix{netip.MustParsePrefix("198.18.1.0/24"), netip.MustParsePrefix("198.18.2.0/24")}); err != nil {
		t.Fatal(err)
	}
	if err := d.SetSNATDestinations(map[netip.Addr][]netip.Prefix{
		valid:  {netip.MustParsePrefix("203.0.113.0/25")},
		lapsed: {netip.MustParsePrefix("203.0.113.0/25")},
		second: {netip.MustParsePrefix("8.8.8.0/24")},
	}); err != nil {
		t.Fatal(err)
	}
	steered := ipv4Packet("198.18.2.10", "203.0.113.5", protoTCP)
	reply := ipv4Packet("203.0.113.5", valid.String(), protoTCP)
	rogue := ipv4Packet("198.51.100.77", "203.0.113.5", protoTCP)
	tests := []struct {
		name     string
		pkt      []byte
		wantRet  uint32
		wantMark uint32
		wantStat string
	}{
		{name: "steered to a valid grant: marked for SNAT", pkt: withDst(steered, routing.VirtualMAC(valid)),
			wantRet: retNext, wantMark: markSNAT | 5<<16 | 0x1234, wantStat: "uplink_in_snat"},
		{name: "steered UDP to a valid grant: marked for SNAT", pkt: withDst(ipv4Packet("198.18.1.10", "203.0.113.100", protoUDP), routing.VirtualMAC(valid)),
			wantRet: retNext, wantMark: markSNAT | 5<<16 | 0x1234, wantStat: "uplink_in_snat"},
		{name: "steered to a lapsed grant: dropped", pkt: withDst(steered, routing.VirtualMAC(lapsed)),
			wantRet: retDrop, wantStat: "uplink_in_expired"},
		{name: "TCP from a host on the segment, routed via the egress IP: dropped", pkt: withDst(rogue, routing.VirtualMAC(valid)),
			wantRet: retDrop, wantStat: "uplink_in_not_pod"},
		{name: "UDP from a host on the segment, routed via the egress IP: dropped", pkt: withDst(ipv4Packet("198.51.100.77", "203.0.113.5", protoUDP), routing.VirtualMAC(valid)),
			wantRet: retDrop, wantStat: "uplink_in_not_pod"},
		{name: "from an address next to the pod CIDRs: dropped", pkt: withDst(ipv4Packet("198.18.3.10", "203.0.113.5", protoTCP), routing.VirtualMAC(valid)),
			wantRet: retDrop, wantStat: "uplink_in_not_pod"},
		{name: "from a pod to a destination no policy routes anywhere: dropped", pkt: withDst(ipv4Packet("198.18.2.10", "203.0.113.200", protoTCP), routing.VirtualMAC(valid)),
			wantRet: retDrop, wantStat: "uplink_in_not_destination"},
		{name: "from a pod to another egress IP's destination: dropped", pkt: withDst(ipv4Packet("198.18.2.10", "8.8.8.8", protoTCP), routing.VirtualMAC(valid)),
			wantRet: retDrop, wantStat: "uplink_in_not_destination"},
		{name: "from a pod to that destination, by its own egress IP: marked for SNAT", pkt: withDst(ipv4Packet("198.18.2.10", "8.8.8.8", protoTCP), routing.VirtualMAC(second)),
			wantRet: retNext, wantMark: markSNAT | 7<<16 | 0x1234, wantStat: "uplink_in_snat"},
		{name: "a host on the segment to the floating IP itself: taken in as it is", pkt: withDst(ipv4Packet("198.51.100.77", valid.String(), protoTCP), routing.VirtualMAC(valid)),
			wantRet: retNext, wantMark: 0x1234},
		{name: "steered to an IP another node holds: left to the stack, which drops it", pkt: withDst(steered, routing.VirtualMAC(other)),
			wantRet: retNext, wantMark: 0x1234, wantStat: "uplink_in_not_held"},
		{name: "a reply to the floating IP: taken in as it is", pkt: withDst(reply, routing.VirtualMAC(valid)),
			wantRet: retNext, wantMark: 0x1234},
		{name: "a reply to a floating IP whose grant lapsed: taken in, for conntrack", pkt: withDst(ipv4Packet("203.0.113.5", lapsed.String(), protoTCP), routing.VirtualMAC(lapsed)),
			wantRet: retNext, wantMark: 0x1234},
		{name: "ARP to the virtual MAC: taken in", pkt: withDst(arpPacket(2, netip.MustParseAddr("198.51.100.1")), routing.VirtualMAC(valid)),
			wantRet: retNext, wantMark: 0x1234},
		{name: "a frame to another MAC passes untouched", pkt: steered, wantRet: retNext, wantMark: 0x1234},
		{name: "IPv6 to the virtual MAC passes untouched", pkt: withDst(ipv6Packet(), routing.VirtualMAC(valid)), wantRet: retNext, wantMark: 0x1234},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ret, mark uint32
			delta := statsDelta(t, d, func() { ret, mark, _ = runFrame(t, d.objs.EgwUplinkIn, tt.pkt, 0x1234) })
			if ret != tt.wantRet {
				t.Errorf("returned %#x, want %#x", ret, tt.wantRet)
			}
			if tt.wantRet != retDrop && mark != tt.wantMark {
				t.Errorf("mark %#08x, want %#08x", mark, tt.wantMark)
			}
			if want := one(tt.wantStat); !maps.Equal(delta, want) {
				t.Errorf("counters moved %v, want %v", delta, want)
			}
		})
	}
}

// TestSteerOverL2 sends packets from a source namespace, routed by their steer mark as
// the agent routes them, to a gateway namespace on the same segment: egw_uplink_out
// addresses them to the egress IP's virtual MAC, and the gateway's egw_uplink_in marks
// them for SNAT only under a valid grant (an nft rule there counts packets carrying
// exactly that mark). The gateway's kernel answers ARP for the floating IP with its
// virtual MAC, and not at all once the grant lapses.
func TestSteerOverL2(t *testing.T) {
	src, gw := newNetns(t, "src"), newNetns(t, "gw")
	sh(t, "ip", "link", "add", "uplink", "netns", src, "type", "veth", "peer", "name", "uplink", "netns", gw)
	sh(t, "ip", "-n", src, "addr", "add", "198.51.100.2/24", "dev", "uplink")
	sh(t, "ip", "-n", gw, "addr", "add", "198.51.100.1/24", "dev", "uplink")
	sh(t, "ip", "-n", gw, "addr", "add", "198.51.100.100/24", "dev", "uplink") // the floating IP
	for _, ns := range []string{src, gw} {
		sh(t, "ip", "-n", ns, "link", "set", "uplink", "up")
	}
	steeringRoute(t, src, "uplink")
	const snatID = 5
	countGranted(t, gw)

	dSrc, dGw := load(t), load(t)
	inNetns(t, src, func() {
		if err := dSrc.AttachUplink(ifindex(t, src, "uplink")); err != nil {
			t.Fatal(err)
		}
	})
	inNetns(t, gw, func() {
		if err := dGw.AttachUplink(ifindex(t, gw, "uplink")); err != nil {
			t.Fatal(err)
		}
	})
	tbl := build(t, routing.NewTableBuilder(), compile(pol{name: "web", dests: []string{"203.0.113.0/25"}, egressIP: "198.51.100.100"}), pod("198.18.1.10", "web"))
	if err := dSrc.Sync(tbl); err != nil {
		t.Fatal(err)
	}
	steer := markSteer | egressIDOf(t, tbl, "198.51.100.100")<<markIDShift
	floating := netip.MustParseAddr("198.51.100.100")
	srcMAC, err := net.ParseMAC(strings.TrimSpace(sh(t, "ip", "netns", "exec", src, "cat", "/sys/class/net/uplink/address")))
	if err != nil {
		t.Fatal(err)
	}
	if err := dSrc.SetUplinks(map[netip.Addr]Uplink{floating: {Ifindex: ifindex(t, src, "uplink"), MAC: srcMAC}}); err != nil {
		t.Fatal(err)
	}
	permit(t, dGw, "198.51.100.2/32", floating, "203.0.113.0/25")
	vmac := routing.VirtualMAC(floating).String()

	t.Run("the gateway answers ARP for the floating IP with its virtual MAC", func(t *testing.T) {
		if err := dGw.SetGrant(floating, snatID, monotonicNow()+time.Hour); err != nil {
			t.Fatal(err)
		}
		inNetns(t, src, func() { sendUDP(t, floating.String(), 0) })
		if !eventually(func() bool { return strings.Contains(sh(t, "ip", "-n", src, "neigh", "show", floating.String()), vmac) }) {
			t.Errorf("the source's neighbour entry for %s: %q, want %s", floating, sh(t, "ip", "-n", src, "neigh", "show", floating.String()), vmac)
		}
	})

	tests := []struct {
		name        string
		grant       func() error
		mark        uint32
		wantSrc     string // the counter that moves by one in the source, if any
		wantGw      string // and in the gateway
		wantGranted uint64
	}{
		{name: "a valid grant: the gateway marks for SNAT",
			grant: func() error { return dGw.SetGrant(floating, snatID, monotonicNow()+time.Hour) },
			mark:  steer | 0x42, wantSrc: "uplink_out_steer", wantGw: "uplink_in_snat", wantGranted: 1},
		{name: "an expired grant drops",
			grant: func() error { return dGw.SetGrant(floating, snatID, monotonicNow()-time.Second) },
			mark:  steer, wantSrc: "uplink_out_steer", wantGw: "uplink_in_expired"},
		{name: "no grant: not taken in",
			grant: func() error { return dGw.DeleteGrant(floating) },
			mark:  steer, wantSrc: "uplink_out_steer", wantGw: "uplink_in_not_held"},
		{name: "an egress id with no IP drops at the source",
			grant: func() error { return dGw.SetGrant(floating, snatID, monotonicNow()+time.Hour) },
			mark:  markSteer | 0xFFF<<markIDShift, wantSrc: "uplink_out_no_egress_ip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.grant(); err != nil {
				t.Fatal(err)
			}
			granted := nftCounter(t, gw, "granted")
			srcBefore, gwBefore := stats(t, dSrc), stats(t, dGw)
			inNetns(t, src, func() { sendUDP(t, "203.0.113.5", tt.mark) })
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

	t.Run("once the grant lapses, the gateway answers no ARP for the floating IP", func(t *testing.T) {
		if err := dGw.SetGrant(floating, snatID, monotonicNow()-time.Second); err != nil {
			t.Fatal(err)
		}
		sh(t, "ip", "-n", src, "neigh", "flush", "dev", "uplink", "to", floating.String())
		before := stats(t, dGw)["arp_lapsed_grant"]
		inNetns(t, src, func() { sendUDP(t, floating.String(), 0) })
		if !eventually(func() bool { return stats(t, dGw)["arp_lapsed_grant"] > before }) {
			t.Fatal("the gateway's ARP reply was not stopped")
		}
		if got := sh(t, "ip", "-n", src, "neigh", "show", floating.String()); strings.Contains(got, vmac) {
			t.Errorf("the source learnt %s after the grant lapsed: %q", vmac, got)
		}
	})
}

// permit lets the gateway d SNAT to egressIP what comes from source to dst. The L2 tests
// send from the source node's own address, standing in for a pod's.
func permit(t *testing.T, d *Dataplane, source string, egressIP netip.Addr, dst string) {
	t.Helper()
	if err := d.SetPodCIDRs([]netip.Prefix{netip.MustParsePrefix(source)}); err != nil {
		t.Fatal(err)
	}
	if err := d.SetSNATDestinations(map[netip.Addr][]netip.Prefix{egressIP: {netip.MustParsePrefix(dst)}}); err != nil {
		t.Fatal(err)
	}
}

// steeringRoute routes packets with the steer mark in ns out of dev, as the agent does:
// table 2640 by mark, via a next hop whose neighbour entry is the virtual MAC of
// 0.0.0.0. Other traffic to 203.0.113.0/24 goes to a router that is not there.
func steeringRoute(t *testing.T, ns, dev string) {
	t.Helper()
	sh(t, "ip", "-n", ns, "neigh", "add", "169.254.88.2", "lladdr", "02:65:00:00:00:00", "dev", dev, "nud", "permanent")
	sh(t, "ip", "-n", ns, "route", "add", "default", "via", "169.254.88.2", "dev", dev, "onlink", "table", "2640")
	sh(t, "ip", "-n", ns, "rule", "add", "fwmark", "0xe0000000/0xf0000000", "lookup", "2640")
	sh(t, "ip", "-n", ns, "route", "add", "203.0.113.0/24", "via", "198.51.100.1")
}

// countGranted makes the nft counter "granted" in ns count the packets that arrive on
// "uplink" carrying exactly the SNAT mark of snat id 5.
func countGranted(t *testing.T, ns string) {
	t.Helper()
	nft := `table ip egwtest {
		counter granted {}
		chain pre {
			type filter hook prerouting priority 0; policy accept;
			iifname "uplink" meta mark 0xd0050000 counter name "granted"
		}
	}`
	if out, err := runStdin(nft, "ip", "netns", "exec", ns, "nft", "-f", "-"); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
}

func runStdin(stdin string, args ...string) (string, error) {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// sendUDP sends one datagram with the socket mark set, as a steered pod packet leaves
// the source node's routing: the mark chooses table 2640.
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

// TestSetUplinks: egw_uplinks holds exactly the last set given; bad entries are refused.
func TestSetUplinks(t *testing.T) {
	d := load(t)
	a, b, c := netip.MustParseAddr("198.51.100.100"), netip.MustParseAddr("198.51.100.101"), netip.MustParseAddr("198.51.101.100")
	m1, m2 := net.HardwareAddr{2, 0, 0, 0, 0, 1}, net.HardwareAddr{2, 0, 0, 0, 0, 2}
	read := func() map[netip.Addr]uplinkValue {
		out := map[netip.Addr]uplinkValue{}
		var k ipv4
		var v uplinkValue
		it := d.objs.EgwUplinks.Iterate()
		for it.Next(&k, &v) {
			out[k.addr()] = v
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if err := d.SetUplinks(map[netip.Addr]Uplink{a: {Ifindex: 2, MAC: m1}, b: {Ifindex: 2, MAC: m1}}); err != nil {
		t.Fatal(err)
	}
	if err := d.SetUplinks(map[netip.Addr]Uplink{b: {Ifindex: 3, MAC: m2}, c: {Ifindex: 3, MAC: m2}}); err != nil {
		t.Fatal(err)
	}
	want := map[netip.Addr]uplinkValue{b: {Ifindex: 3, MAC: [6]byte(m2)}, c: {Ifindex: 3, MAC: [6]byte(m2)}}
	if got := read(); !maps.Equal(got, want) {
		t.Errorf("egw_uplinks holds %v, want %v", got, want)
	}
	for _, bad := range []map[netip.Addr]Uplink{
		{netip.MustParseAddr("2001:db8::1"): {Ifindex: 2, MAC: m1}},
		{a: {Ifindex: 2, MAC: net.HardwareAddr{1, 2, 3}}},
		{a: {Ifindex: 0, MAC: m1}},
	} {
		if err := d.SetUplinks(bad); err == nil {
			t.Errorf("SetUplinks(%v) took it", bad)
		}
	}
	if got := read(); !maps.Equal(got, want) {
		t.Errorf("after refused writes, egw_uplinks holds %v, want %v unchanged", got, want)
	}
}

// TestSteerToAnotherUplink: the steering route leads out of one uplink, but the egress
// IP is on another's subnet: egw_uplink_out moves the packet to that uplink, from its
// MAC, and the gateway behind it takes it in for SNAT.
func TestSteerToAnotherUplink(t *testing.T) {
	src, gw := newNetns(t, "src2"), newNetns(t, "gw2")
	sh(t, "ip", "-n", src, "link", "add", "upa", "type", "veth", "peer", "name", "upapeer")
	sh(t, "ip", "link", "add", "upb", "netns", src, "type", "veth", "peer", "name", "uplink", "netns", gw)
	sh(t, "ip", "-n", src, "addr", "add", "198.51.100.2/24", "dev", "upa")
	sh(t, "ip", "-n", src, "addr", "add", "198.51.101.2/24", "dev", "upb")
	sh(t, "ip", "-n", gw, "addr", "add", "198.51.101.100/24", "dev", "uplink") // the floating IP
	for _, dev := range []string{"upa", "upapeer", "upb"} {
		sh(t, "ip", "-n", src, "link", "set", dev, "up")
	}
	sh(t, "ip", "-n", gw, "link", "set", "uplink", "up")
	steeringRoute(t, src, "upa")
	countGranted(t, gw)
	dSrc, dGw := load(t), load(t)
	upa, upb := ifindex(t, src, "upa"), ifindex(t, src, "upb")
	inNetns(t, src, func() {
		for _, i := range []int{upa, upb} {
			if err := dSrc.AttachUplink(i); err != nil {
				t.Fatal(err)
			}
		}
	})
	inNetns(t, gw, func() {
		if err := dGw.AttachUplink(ifindex(t, gw, "uplink")); err != nil {
			t.Fatal(err)
		}
	})
	floating := netip.MustParseAddr("198.51.101.100")
	tbl := build(t, routing.NewTableBuilder(), compile(pol{name: "web", dests: []string{"203.0.113.0/25"}, egressIP: floating.String()}), pod("198.18.1.10", "web"))
	if err := dSrc.Sync(tbl); err != nil {
		t.Fatal(err)
	}
	mac, err := net.ParseMAC(strings.TrimSpace(sh(t, "ip", "netns", "exec", src, "cat", "/sys/class/net/upb/address")))
	if err != nil {
		t.Fatal(err)
	}
	if err := dSrc.SetUplinks(map[netip.Addr]Uplink{floating: {Ifindex: upb, MAC: mac}}); err != nil {
		t.Fatal(err)
	}
	if err := dGw.SetGrant(floating, 5, monotonicNow()+time.Hour); err != nil {
		t.Fatal(err)
	}
	permit(t, dGw, "198.51.100.2/32", floating, "203.0.113.0/25") // the steering route leaves by upa, so its address
	before := nftCounter(t, gw, "granted")
	inNetns(t, src, func() { sendUDP(t, "203.0.113.5", markSteer|egressIDOf(t, tbl, floating.String())<<markIDShift) })
	if !eventually(func() bool { return nftCounter(t, gw, "granted") > before }) {
		t.Fatalf("the gateway behind the other uplink took nothing in; source counters %v, gateway counters %v", stats(t, dSrc), stats(t, dGw))
	}
	if got := stats(t, dGw)["uplink_in_snat"]; got != 1 {
		t.Errorf("the gateway counted %d packets marked for SNAT, want 1", got)
	}
}
