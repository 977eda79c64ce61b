package dataplane

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/egressgw/egressgw/test/cluster"
	"github.com/egressgw/egressgw/test/topology"
)

// TestSelectedPodsLeaveWithTheEgressIP: the spec's packet walk. Alice's and paul's
// frontends reach the policy's destination with the gateway's first floating IP, over
// TCP, UDP and ICMP, from the gateway node itself, from another node, and from a node of
// the other rack (routed); replies return.
func TestSelectedPodsLeaveWithTheEgressIP(t *testing.T) {
	c, ex := setupExample(t)
	ctx := context.Background()
	for _, pod := range []*cluster.Pod{ex.aliceGW, ex.paul, ex.rack2} {
		where := "another node"
		switch {
		case pod.Node == ex.gateway:
			where = "the gateway node"
		case pod == ex.rack2:
			where = "the other rack"
		}
		t.Run("TCP from "+where, func(t *testing.T) {
			src, err := pod.WhoTCP(ctx, topology.ExternalIP)
			if err != nil {
				t.Fatal(err)
			}
			if src.Addr() != ex.egressIP {
				t.Errorf("the external host saw %s, want %s", src.Addr(), ex.egressIP)
			}
		})
		t.Run("UDP from "+where, func(t *testing.T) {
			src, err := pod.WhoUDP(ctx, topology.ExternalIP)
			if err != nil {
				t.Fatal(err)
			}
			if src.Addr() != ex.egressIP {
				t.Errorf("the external host saw %s, want %s", src.Addr(), ex.egressIP)
			}
		})
		t.Run("ICMP from "+where, func(t *testing.T) {
			mark := c.Topo.External.Mark()
			if err := pod.Ping(topology.ExternalIP); err != nil {
				t.Fatalf("no echo reply: %v", err)
			}
			for _, p := range c.Topo.External.PacketsSince(mark, func(p topology.Packet) bool { return p.Proto == 1 }) {
				if p.Src != ex.egressIP {
					t.Errorf("an ICMP packet arrived from %s, want %s", p.Src, ex.egressIP)
				}
			}
		})
	}
}

// TestOtherTrafficIsMasqueraded: what no policy selects keeps the default.
func TestOtherTrafficIsMasqueraded(t *testing.T) {
	_, ex := setupExample(t)
	ctx := context.Background()
	tests := []struct {
		name string
		pod  *cluster.Pod
		dst  netip.Addr
	}{
		{name: "a pod without role=frontend", pod: ex.backend, dst: topology.ExternalIP},
		{name: "a frontend of a namespace the policy does not select", pod: ex.bob, dst: topology.ExternalIP},
		{name: "a selected pod to another destination", pod: ex.paul, dst: topology.ExternalIP2},
		{name: "a selected pod on the gateway node to another destination", pod: ex.aliceGW, dst: topology.ExternalIP2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for proto, who := range map[string]func(context.Context, netip.Addr) (netip.AddrPort, error){"TCP": tt.pod.WhoTCP, "UDP": tt.pod.WhoUDP} {
				src, err := who(ctx, tt.dst)
				if err != nil {
					t.Fatalf("%s: %v", proto, err)
				}
				if src.Addr() != tt.pod.Node.IP {
					t.Errorf("%s: the external host saw %s, want the node's IP %s", proto, src.Addr(), tt.pod.Node.IP)
				}
			}
		})
	}
}

// TestSourcePortCollision: two pods on different nodes, one source port, one destination:
// the gateway's conntrack gives them different ports of the egress IP, and both get
// their answers.
func TestSourcePortCollision(t *testing.T) {
	c, ex := setupExample(t)
	ctx := context.Background()
	var other *topology.Node
	for _, n := range c.Topo.Nodes {
		if n != ex.gateway && n != ex.paul.Node {
			other = n
		}
	}
	second, err := c.AddPod(ctx, other.Name, "paul", "frontend-2", map[string]string{"role": "frontend"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.RemovePod(context.Background(), second) })
	const port = 40000
	dst := netip.AddrPortFrom(topology.ExternalIP, topology.ServicePort)
	seen := map[string]netip.AddrPort{}
	if err := eventually(30*time.Second, func() error {
		for _, p := range []*cluster.Pod{ex.paul, second} {
			src, err := udpFromPort(p, port, dst, "collide")
			if err != nil {
				return fmt.Errorf("%s: %w", p.Name, err)
			}
			seen[p.Name] = src
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	a, b := seen[ex.paul.Name], seen[second.Name]
	if a.Addr() != ex.egressIP || b.Addr() != ex.egressIP {
		t.Errorf("sources %s and %s, want both on %s", a, b, ex.egressIP)
	}
	if a == b {
		t.Errorf("both pods were seen as %s: their flows collided", a)
	}
}

// udpFromPort sends one datagram from a fixed source port of the pod and returns the
// source the external host saw.
func udpFromPort(p *cluster.Pod, port int, dst netip.AddrPort, payload string) (netip.AddrPort, error) {
	var conn *net.UDPConn
	err := topology.Do(p.NS, func() (err error) {
		conn, err = net.DialUDP("udp4", &net.UDPAddr{Port: port}, net.UDPAddrFromAddrPort(dst))
		return err
	})
	if err != nil {
		return netip.AddrPort{}, err
	}
	defer conn.Close()
	buf := make([]byte, 256)
	for range 5 {
		if _, err := conn.Write([]byte(payload)); err != nil {
			return netip.AddrPort{}, err
		}
		_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if n, err := conn.Read(buf); err == nil {
			src, _, _ := strings.Cut(string(buf[:n]), " ")
			return netip.ParseAddrPort(src)
		}
	}
	return netip.AddrPort{}, fmt.Errorf("no answer to %q", payload)
}

// TestNetworkPolicyFirst: a packet the source node's network policy drops never reaches
// the gateway; an allowed one is SNATed.
func TestNetworkPolicyFirst(t *testing.T) {
	_, ex := setupExample(t)
	ctx := context.Background()
	node := ex.paul.Node
	if err := node.DenyEgress(ex.paul.IP, netip.PrefixFrom(topology.ExternalIP, 32)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = node.ClearPolicy() })
	before, err := agentMetric(ex.gateway, "egressgw_agent_packets_total", `verdict="uplink_in_snat"`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ex.paul.WhoUDP(ctx, topology.ExternalIP); err == nil {
		t.Error("the denied packet reached the external host")
	}
	after, err := agentMetric(ex.gateway, "egressgw_agent_packets_total", `verdict="uplink_in_snat"`)
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("the gateway took in %v steered packets while the only sender was denied by network policy", after-before)
	}
	src, err := ex.aliceGW.WhoUDP(ctx, topology.ExternalIP)
	if err != nil || src.Addr() != ex.egressIP {
		t.Errorf("an allowed pod: seen as %v (%v), want %s", src, err, ex.egressIP)
	}
}

// TestNewPodNeverLeaks: a selected pod that sends from its first instant, before its
// node's agent knows it, is dropped until it is programmed, and then leaves with the
// egress IP. Not one of its packets reaches the destination with another source.
func TestNewPodNeverLeaks(t *testing.T) {
	c, ex := setupExample(t)
	ctx := context.Background()
	node := ex.paul.Node
	tp, err := c.Topo.AddPod(node, "paul/early")
	if err != nil {
		t.Fatal(err)
	}
	mark := c.Topo.External.Mark()
	stop := make(chan struct{})
	sent := make(chan int, 1)
	var conn net.Conn
	if conn, err = tp.DialUDP(ctx, netip.AddrPortFrom(topology.ExternalIP, topology.ServicePort)); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go func() { // from the first instant, every 5 ms, until told to stop (bounded: 60 s)
		n := 0
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); n++ {
			select {
			case <-stop:
				sent <- n
				return
			default:
			}
			_, _ = fmt.Fprintf(conn, "early-%d", n)
			time.Sleep(5 * time.Millisecond)
		}
		sent <- n
	}()
	time.Sleep(300 * time.Millisecond) // the pod has been sending before the API knows it
	pod := &cluster.Pod{Pod: tp, Namespace: "paul"}
	if err := c.RegisterPod(ctx, pod, "early", map[string]string{"role": "frontend"}); err != nil {
		close(stop)
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.RemovePod(context.Background(), pod) })
	err = eventually(20*time.Second, func() error {
		if len(c.Topo.External.PacketsSince(mark, func(p topology.Packet) bool {
			return strings.HasPrefix(p.Payload, "early-") && p.Src == ex.egressIP
		})) < 20 {
			return fmt.Errorf("fewer than 20 packets arrived with %s", ex.egressIP)
		}
		return nil
	})
	close(stop)
	n := <-sent
	if err != nil {
		t.Fatal(err)
	}
	var arrived int
	for _, p := range c.Topo.External.PacketsSince(mark, func(p topology.Packet) bool { return strings.HasPrefix(p.Payload, "early-") }) {
		arrived++
		if p.Src != ex.egressIP {
			t.Errorf("leak: %s", p)
		}
	}
	t.Logf("sent %d datagrams from the pod's first instant; %d arrived, all from %s", n, arrived, ex.egressIP)
}

// TestLargeTransfers: 16 MiB each way through the gateway, from a pod on the egress IP's
// segment and from one on the other rack. Steered packets on the segment cross it as the
// pod sent them, with no header added, so nothing on the way is smaller than the pod's
// MTU; routed ones are wrapped in 20 bytes, and the pod's node tells it so (frag-needed
// from the routed table's MTU) before anything is too big: nothing black-holes.
func TestLargeTransfers(t *testing.T) {
	c, ex := setupExample(t)
	for _, pod := range []*cluster.Pod{ex.paul, ex.rack2} {
		t.Run(pod.Node.Name, func(t *testing.T) { transfer(t, pod, ex.egressIP) })
	}
	// Between veths a GSO packet crosses whole. On a physical network it is cut into
	// segments on the wire and the gateway's NIC aggregates them again (GRO), the
	// wrapped ones too: the gateway then unwraps GRO packets of IPv4-in-IPv4.
	t.Run("node4, segmented on the wire, GRO at the gateway", func(t *testing.T) {
		gw := currentGateway(t, c)
		// The router cuts them (no TSO nor GSO on its leg into rack 1); the gateway's eth0
		// aggregates them, which a veth does only for what its peer (the bridge's port)
		// sends without TSO; and the router cuts the unwrapped aggregates again on their
		// way out (nor on its external leg), in software, by their headers as they are now.
		for _, step := range []struct{ ns, dev, on, off string }{
			{c.Topo.Router, "eth0", "tso off gso off", "tso on gso on"},
			{c.Topo.Router, "eth1", "tso off gso off", "tso on gso on"},
			{c.Topo.L2, gw.BridgePort, "tso off", "tso on"},
			{gw.NS, "eth0", "gro on", "gro off"},
		} {
			if out, err := topology.Exec(step.ns, append([]string{"ethtool", "-K", step.dev}, strings.Fields(step.on)...)...); err != nil {
				t.Fatalf("ethtool -K %s %s: %v: %s", step.dev, step.on, err, out)
			}
			t.Cleanup(func() {
				_, _ = topology.Exec(step.ns, append([]string{"ethtool", "-K", step.dev}, strings.Fields(step.off)...)...)
			})
		}
		before, err := agentMetric(gw, "egressgw_agent_packets_total", `verdict="uplink_in_decap"`)
		if err != nil {
			t.Fatal(err)
		}
		upload(t, ex.rack2, ex.egressIP)
		after, err := agentMetric(gw, "egressgw_agent_packets_total", `verdict="uplink_in_decap"`)
		if err != nil {
			t.Fatal(err)
		}
		download(t, ex.rack2)
		// 16 MiB in 1,440-byte segments is 11,651 of them; aggregated, far fewer.
		t.Logf("the gateway unwrapped %.0f packets for 16 MiB up", after-before)
		if after-before > 11651/2 {
			t.Errorf("the gateway unwrapped %.0f packets: GRO did not aggregate the wrapped segments, and this tested nothing", after-before)
		}
	})
}

// transfer sends 16 MiB from pod to the external host, and 16 MiB back, and checks that
// the host saw egressIP.
func transfer(t *testing.T, pod *cluster.Pod, egressIP netip.Addr) {
	t.Run("upload", func(t *testing.T) { upload(t, pod, egressIP) })
	t.Run("download", func(t *testing.T) { download(t, pod) })
}

const transferSize = 16 << 20

// upload sends 16 MiB from pod to the external host, which answers with the source it
// saw and the bytes it got.
func upload(t *testing.T, pod *cluster.Pod, egressIP netip.Addr) {
	conn, err := pod.DialTCP(context.Background(), netip.AddrPortFrom(topology.ExternalIP, topology.ServicePort))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Minute))
	fmt.Fprintf(conn, "SINK\n")
	if _, err := io.CopyN(conn, zeroReader{}, transferSize); err != nil {
		t.Fatal(err)
	}
	conn.(*net.TCPConn).CloseWrite()
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%d", transferSize)
	if f := strings.Fields(line); len(f) != 2 || f[1] != want || !strings.HasPrefix(f[0], egressIP.String()+":") {
		t.Errorf("the server answered %q, want the egress IP and %s bytes", line, want)
	}
}

// download has the external host send 16 MiB to pod.
func download(t *testing.T, pod *cluster.Pod) {
	conn, err := pod.DialTCP(context.Background(), netip.AddrPortFrom(topology.ExternalIP, topology.ServicePort))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Minute))
	fmt.Fprintf(conn, "SOURCE %d\n", transferSize)
	n, err := io.Copy(io.Discard, conn)
	if err != nil || n != transferSize {
		t.Errorf("received %d bytes (%v), want %d", n, err, transferSize)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestFragNeededReachesThePod: an ICMP error about a NATed flow is translated back by the
// gateway's conntrack and delivered to the pod, on the segment or on the other rack, so
// path MTU discovery works.
func TestFragNeededReachesThePod(t *testing.T) {
	c, ex := setupExample(t)
	if _, err := topology.Exec(c.Topo.Router, "ip", "link", "set", "eth1", "mtu", "1300"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = topology.Exec(c.Topo.Router, "ip", "link", "set", "eth1", "mtu", "1500") })
	for _, pod := range []*cluster.Pod{ex.paul, ex.rack2} {
		t.Run(pod.Node.Name, func(t *testing.T) {
			// ping with DF and a size over the router's MTU: the router answers frag-needed.
			out, _ := pod.Exec("ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", "-M", "do", "-s", "1372", topology.ExternalIP.String())
			if !strings.Contains(out, "mtu = 1300") && !strings.Contains(out, "mtu=1300") {
				t.Errorf("the pod never learned the path MTU of 1300 from the router's frag-needed:\n%s", out)
			}
			route, err := pod.Exec("ip", "route", "get", topology.ExternalIP.String())
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(route, "mtu 1300") {
				t.Errorf("the pod's route cache has no mtu 1300:\n%s", route)
			}
		})
	}
}

// TestPassesRewriteNoNft: a pass that changes nothing in the nft table does not write
// it. Namespace label changes that no policy selects make every agent run passes; the
// nft write count must not move meanwhile. (The node CIDRs came in the informer's
// order, so most passes rewrote the table, 50–190 ms each, and a handover waited.)
func TestPassesRewriteNoNft(t *testing.T) {
	c, _ := setupExample(t)
	read := func(name string) map[string]float64 {
		out := map[string]float64{}
		for _, n := range c.Topo.Nodes {
			v, err := agentMetric(n, name)
			if err != nil {
				t.Fatal(err)
			}
			out[n.Name] = v
		}
		return out
	}
	passes, writes := read("egressgw_agent_pass_seconds_count"), read("egressgw_agent_nft_write_seconds_count")
	for i := range 10 {
		if _, err := c.Kubectl(nil, "label", "namespace", "default", "--overwrite", fmt.Sprintf("egressgw-test-touch=%d", i)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	if _, err := c.Kubectl(nil, "label", "namespace", "default", "egressgw-test-touch-"); err != nil {
		t.Fatal(err)
	}
	passesAfter, writesAfter := read("egressgw_agent_pass_seconds_count"), read("egressgw_agent_nft_write_seconds_count")
	for _, n := range c.Topo.Nodes {
		ran, wrote := passesAfter[n.Name]-passes[n.Name], writesAfter[n.Name]-writes[n.Name]
		t.Logf("%s: %.0f passes, %.0f nft writes", n.Name, ran, wrote)
		if ran < 5 {
			t.Errorf("%s ran %.0f passes for 10 namespace changes: the check shows nothing", n.Name, ran)
		}
		if wrote != 0 {
			t.Errorf("%s rewrote its nft table %.0f times in %.0f passes that changed nothing in it", n.Name, wrote, ran)
		}
	}
}
