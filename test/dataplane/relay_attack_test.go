package dataplane

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/egressgw/egressgw/test/cluster"
	"github.com/egressgw/egressgw/test/topology"
)

// rogueIP is a host on the node segment that is no node: an address the topology does
// not use.
var rogueIP = netip.MustParseAddr("198.51.100.66")

// addRogueHost plugs a namespace into the node segment's bridge with addr on it, as
// anyone with a port on the node network could, and removes it when the test ends.
func addRogueHost(t *testing.T, c *cluster.Cluster, addr netip.Addr) string {
	t.Helper()
	ns := c.Topo.ID + "-rogue" // the topology's prefix: a sweep removes it if the test dies
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ip("netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", "rogue", "netns", c.Topo.L2)
	ip("-n", c.Topo.L2, "link", "set", "rogue", "master", "br0", "up")
	ip("-n", ns, "addr", "add", netip.PrefixFrom(addr, topology.Segment.Bits()).String(), "dev", "eth0")
	ip("-n", ns, "link", "set", "lo", "up")
	ip("-n", ns, "link", "set", "eth0", "up")
	return ns
}

// rogueTCP connects from ns to dst and asks who it is: the external host answers the
// source it saw, if the connection is made at all.
func rogueTCP(ctx context.Context, ns string, dst netip.Addr) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := topology.Dial(ctx, ns, "tcp4", netip.AddrPortFrom(dst, topology.ServicePort).String())
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := fmt.Fprintf(conn, "WHO\n"); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	return strings.TrimSpace(line), err
}

// rogueUDP sends a few datagrams with payload from ns to dst, and returns the external
// host's answer, if one comes.
func rogueUDP(ctx context.Context, ns string, dst netip.Addr, payload string) (string, error) {
	conn, err := topology.Dial(ctx, ns, "udp4", netip.AddrPortFrom(dst, topology.ServicePort).String())
	if err != nil {
		return "", err
	}
	defer conn.Close()
	buf := make([]byte, 512)
	for range 5 {
		if _, err := conn.Write([]byte(payload)); err != nil {
			return "", err
		}
		_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if n, err := conn.Read(buf); err == nil {
			return string(buf[:n]), nil
		}
	}
	return "", fmt.Errorf("no answer to %q", payload)
}

// TestGatewayRelaysNoRogueHost: a host on the node segment that is no node routes the
// policy's destination via the egress IP (ip route add 203.0.113.10/32 via <egress IP>),
// so its frames go to the IP's virtual MAC, and sends TCP and UDP. It also sends from an
// unused address of a node's pod CIDR, to a destination no policy routes to the egress IP.
// The gateway SNATs none of it: the external host sees nothing from the egress IP while
// the rogue host sends, and the gateway counts the drops; the selected pods still leave
// with the egress IP.
func TestGatewayRelaysNoRogueHost(t *testing.T) {
	c, ex := setupExample(t)
	ctx := context.Background()
	ns := addRogueHost(t, c, rogueIP)
	// A pod CIDR's address that no pod has: a frame from it proves nothing of a pod.
	podSrc := netip.AddrFrom4([4]byte{198, 18, byte(ex.paul.Node.Index), 200})
	for _, args := range [][]string{
		{"-n", ns, "route", "add", netip.PrefixFrom(topology.ExternalIP, 32).String(), "via", ex.egressIP.String()},
		{"-n", ns, "addr", "add", netip.PrefixFrom(podSrc, 32).String(), "dev", "lo"},
		{"-n", ns, "route", "add", netip.PrefixFrom(topology.ExternalIP2, 32).String(), "via", ex.egressIP.String(), "src", podSrc.String()},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	// Earlier tests may have moved the IP: the gateway is whoever holds it now.
	gateway := currentGateway(t, c)
	counter := func(verdict string) float64 {
		t.Helper()
		v, err := agentMetric(gateway, "egressgw_agent_packets_total", fmt.Sprintf("verdict=%q", verdict))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	notPod, notDst := counter("uplink_in_not_pod"), counter("uplink_in_not_destination")

	mark := c.Topo.External.Mark()
	attacks := []struct {
		name string
		send func() (string, error)
	}{
		{name: "TCP from the rogue host to the policy's destination", send: func() (string, error) { return rogueTCP(ctx, ns, topology.ExternalIP) }},
		{name: "UDP from the rogue host to the policy's destination", send: func() (string, error) { return rogueUDP(ctx, ns, topology.ExternalIP, "rogue") }},
		{name: "TCP from a pod CIDR to a destination the policy does not name", send: func() (string, error) { return rogueTCP(ctx, ns, topology.ExternalIP2) }},
		{name: "UDP from a pod CIDR to a destination the policy does not name", send: func() (string, error) { return rogueUDP(ctx, ns, topology.ExternalIP2, "rogue-pod") }},
	}
	for _, a := range attacks {
		// An answer to the rogue host means the external host took it for the egress IP.
		if seen, err := a.send(); err == nil {
			t.Errorf("%s: answered, the external host saw it as %q", a.name, seen)
		}
	}
	time.Sleep(500 * time.Millisecond) // the sniffer's last packets
	from := map[netip.Addr]bool{ex.egressIP: true, rogueIP: true, podSrc: true}
	got := c.Topo.External.PacketsSince(mark, func(p topology.Packet) bool { return from[p.Src] })
	for _, p := range got {
		t.Errorf("the external host saw a packet of the rogue host's: %s", p)
	}
	if len(got) == 0 {
		t.Logf("the external host saw nothing from %s, %s or %s", ex.egressIP, rogueIP, podSrc)
	}
	if d := counter("uplink_in_not_pod") - notPod; d == 0 {
		t.Error("the gateway counted no frame from outside the pod CIDRs: the attack never reached it, and the test tested nothing")
	}
	if d := counter("uplink_in_not_destination") - notDst; d == 0 {
		t.Error("the gateway counted no frame to a destination not the policy's: the attack never reached it, and the test tested nothing")
	}

	t.Run("the selected pods still leave with the egress IP", func(t *testing.T) {
		for _, p := range []*cluster.Pod{ex.paul, ex.aliceGW} {
			for proto, who := range map[string]func(context.Context, netip.Addr) (netip.AddrPort, error){"TCP": p.WhoTCP, "UDP": p.WhoUDP} {
				src, err := who(ctx, topology.ExternalIP)
				if err != nil || src.Addr() != ex.egressIP {
					t.Errorf("%s from %s: seen as %v (%v), want %s", proto, p.Name, src, err, ex.egressIP)
				}
			}
		}
	})
}
