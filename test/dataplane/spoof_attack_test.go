package dataplane

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/egressgw/egressgw/test/topology"
)

// sendSpoofedUDP sends n UDP datagrams from inside ns with src as their source, through
// a raw socket, as any pod can: pods have CAP_NET_RAW by default.
func sendSpoofedUDP(t testing.TB, ns string, src, dst netip.Addr, payload string, n int) {
	t.Helper()
	body := []byte(payload)
	pkt := make([]byte, 28+len(body))
	pkt[0] = 0x45
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	pkt[8], pkt[9] = 64, unix.IPPROTO_UDP
	s, d := src.As4(), dst.As4()
	copy(pkt[12:16], s[:])
	copy(pkt[16:20], d[:])
	binary.BigEndian.PutUint16(pkt[20:], 40404)
	binary.BigEndian.PutUint16(pkt[22:], topology.ServicePort)
	binary.BigEndian.PutUint16(pkt[24:], uint16(8+len(body))) // checksum 0: none, as IPv4 allows
	copy(pkt[28:], body)
	if err := topology.Do(ns, func() error {
		// IPPROTO_RAW implies IP_HDRINCL: the kernel sends the header as given, filling in
		// only the checksum.
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for range n {
			if err := unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: d}); err != nil {
				return err
			}
			time.Sleep(10 * time.Millisecond)
		}
		return nil
	}); err != nil {
		t.Fatalf("sending from %s as %s: %v", ns, src, err)
	}
}

// TestSpoofedSourceIsDropped: an unselected pod (alice/backend) sends UDP to the policy's
// destination with the source of a selected pod on its node (paul/frontend), through a
// raw socket. Classified by source alone, the packets were steered and left with the
// egress IP: a way for any pod to use another's allowlisted address. Now its veth lets it
// send from its own IP only: the external host sees none of them, and the node's
// from_pod_drop_spoofed counter counts them. The pod's own packets still leave.
//
// The node's reverse-path filter would drop the spoofed packets later on, in this
// topology, where every node has rp_filter strict; a bridge CNI's cni0 (which the agent
// used to loosen) or a CNI that loosens its pod interfaces would not. The attacker's host
// veth is set loose, as such a CNI leaves it, so that only egressgw stands in the way.
func TestSpoofedSourceIsDropped(t *testing.T) {
	_, ex := setupExample(t)
	attacker, victim := ex.backend, ex.paul
	node := attacker.Node
	if victim.Node != node {
		t.Fatalf("the example has %s on %s and %s on %s; the attack needs them on one node", attacker.Name, node.Name, victim.Name, victim.Node.Name)
	}
	rp := "net.ipv4.conf." + attacker.HostVeth + ".rp_filter"
	if _, err := node.Exec("sysctl", "-w", rp+"=2"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := node.Exec("sysctl", "-w", rp+"=1"); err != nil {
			t.Errorf("restoring %s: %v", rp, err)
		}
	})
	ctx := context.Background()
	ext := sys.Topo.External
	tag := fmt.Sprintf("SPOOF-%d-", os.Getpid())
	const n = 50

	dropped := func() float64 {
		v, err := agentMetric(node, "egressgw_agent_packets_total", `verdict="from_pod_drop_spoofed"`)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	before := dropped()
	mark := ext.Mark()
	sendSpoofedUDP(t, attacker.NS, victim.IP, topology.ExternalIP, tag+"spoofed", n)
	// The same packets from the attacker's own address: they must arrive (as the node's
	// IP; the pod is not selected), or the test could not see the spoofed ones either.
	sendSpoofedUDP(t, attacker.NS, attacker.IP, topology.ExternalIP, tag+"own", 5)
	var seen []topology.Packet
	var own int
	if err := eventually(5*time.Second, func() error {
		own, seen = 0, nil
		for _, p := range ext.PacketsSince(mark, func(p topology.Packet) bool { return strings.HasPrefix(p.Payload, tag) }) {
			if strings.HasPrefix(p.Payload, tag+"own") {
				own++
			} else {
				seen = append(seen, p)
			}
		}
		if own < 5 {
			return fmt.Errorf("%d of the attacker's 5 packets from its own address arrived", own)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the spoofed ones were sent first; give stragglers time
	for _, p := range ext.PacketsSince(mark, func(p topology.Packet) bool { return strings.HasPrefix(p.Payload, tag+"spoofed") }) {
		if !slices.Contains(seen, p) {
			seen = append(seen, p)
		}
	}
	withEgressIP := 0
	for _, p := range seen {
		if p.Src == ex.egressIP {
			withEgressIP++
		}
	}
	if len(seen) > 0 {
		t.Errorf("%d of %d packets that %s sent as %s reached the external host, %d of them as the egress IP %s; the first: %v",
			len(seen), n, attacker.Name, victim.IP, withEgressIP, ex.egressIP, seen[0])
	}
	var got float64
	if err := eventually(5*time.Second, func() error {
		if got = dropped() - before; got < n {
			return fmt.Errorf("from_pod_drop_spoofed on %s rose by %v", node.Name, got)
		}
		return nil
	}); err != nil {
		t.Errorf("%v, want at least %d: the drop is not counted", err, n)
	}
	// The victim is unharmed: it still leaves with the egress IP.
	if src, err := victim.WhoUDP(ctx, topology.ExternalIP); err != nil || src.Addr() != ex.egressIP {
		t.Errorf("%s after the attack: seen as %v (%v), want %s", victim.Name, src, err, ex.egressIP)
	}
	t.Logf("%s sent %d packets as %s: %d reached the external host (%d as the egress IP), %v counted as spoofed on %s",
		attacker.Name, n, victim.IP, len(seen), withEgressIP, got, node.Name)
}
