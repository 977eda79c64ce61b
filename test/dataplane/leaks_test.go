package dataplane

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/egressgw/egressgw/test/cluster"
	"github.com/egressgw/egressgw/test/topology"
)

// stream sends a datagram with tag and a sequence number every 5 ms over one UDP socket
// (one conntrack entry), until stop is called or a minute has passed. stop returns how
// many it sent.
func stream(t *testing.T, p *cluster.Pod, dst netip.Addr, tag string) (stop func() int) {
	t.Helper()
	return streamFor(t, p, dst, tag, time.Minute)
}

// streamFor is stream for at most limit.
func streamFor(t *testing.T, p *cluster.Pod, dst netip.Addr, tag string, limit time.Duration) (stop func() int) {
	t.Helper()
	conn, err := p.DialUDP(context.Background(), netip.AddrPortFrom(dst, topology.ServicePort))
	if err != nil {
		t.Fatal(err)
	}
	done, sent := make(chan struct{}), make(chan int, 1)
	go func() {
		defer conn.Close()
		n := 0
		for deadline := time.Now().Add(limit); time.Now().Before(deadline); n++ {
			select {
			case <-done:
				sent <- n
				return
			default:
			}
			_, _ = fmt.Fprintf(conn, "%s-%d", tag, n)
			time.Sleep(5 * time.Millisecond)
		}
		sent <- n
	}()
	var once bool
	var n int
	return func() int {
		if !once {
			once = true
			close(done)
			n = <-sent
		}
		return n
	}
}

// arrivedFrom waits until at least n datagrams tagged tag arrived at the external host
// from src since mark.
func arrivedFrom(c *cluster.Cluster, mark int, tag string, src netip.Addr, n int) error {
	return eventually(20*time.Second, func() error {
		got := len(c.Topo.External.PacketsSince(mark, func(p topology.Packet) bool {
			return strings.HasPrefix(p.Payload, tag+"-") && p.Src == src
		}))
		if got < n {
			return fmt.Errorf("%d datagrams %s arrived from %s, want %d", got, tag, src, n)
		}
		return nil
	})
}

// TestUnselectedFlowIsMasqueraded: a pod streams UDP over one socket through the
// gateway, and is unselected mid-stream (relabelled). Its flow's conntrack entry on its
// node kept the pod's IP for the way to the gateway; unless the agent deletes it, the
// stream goes on leaving the node with the pod's raw IP once it is no longer steered.
// Every datagram must arrive from the egress IP, then from the node's IP, never from
// anything else.
func TestUnselectedFlowIsMasqueraded(t *testing.T) {
	c, ex := setupExample(t)
	ctx := context.Background()
	pod, err := c.AddPod(ctx, ex.paul.Node.Name, "alice", "streamer", map[string]string{"role": "frontend"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.RemovePod(context.Background(), pod) })
	if err := eventually(30*time.Second, func() error {
		src, err := pod.WhoUDP(ctx, topology.ExternalIP)
		if err == nil && src.Addr() != ex.egressIP {
			err = fmt.Errorf("seen as %s", src.Addr())
		}
		return err
	}); err != nil {
		t.Fatalf("the new pod never left with %s: %v", ex.egressIP, err)
	}

	mark := c.Topo.External.Mark()
	stop := stream(t, pod, topology.ExternalIP, "relabel")
	defer stop()
	if err := arrivedFrom(c, mark, "relabel", ex.egressIP, 20); err != nil {
		t.Fatal(err)
	}
	patch := []byte(`{"metadata":{"labels":{"role":"backend"}}}`)
	name := strings.TrimPrefix(pod.Name, pod.Namespace+"/")
	if _, err := c.Kube.CoreV1().Pods(pod.Namespace).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	relabelled := time.Now()
	err = arrivedFrom(c, mark, "relabel", pod.Node.IP, 20)
	sent := stop()
	var fromEgress, fromNode int
	for _, p := range c.Topo.External.PacketsSince(mark, func(p topology.Packet) bool { return strings.HasPrefix(p.Payload, "relabel-") }) {
		switch p.Src {
		case ex.egressIP:
			fromEgress++
		case pod.Node.IP:
			fromNode++
		default:
			t.Errorf("leak: %s (payload %q)", p, p.Payload)
		}
	}
	if err != nil {
		t.Fatalf("after the relabel: %v", err)
	}
	t.Logf("sent %d datagrams; %d arrived from the egress IP, %d from the node's IP after the relabel (%s ago)",
		sent, fromEgress, fromNode, time.Since(relabelled).Round(time.Millisecond))
}

// TestNftTableLossLeaksNothing: a firewall reload takes the agents' nft table away (its
// SNAT rules, its conntrack zone, its guard) on the gateway and on the source node while
// a selected pod streams. No datagram may reach the external host with any source but
// the egress IP (the BPF guard on the uplinks drops what nft no longer SNATs), and the
// agents put the table back within one --resync (30 s).
func TestNftTableLossLeaksNothing(t *testing.T) {
	c, ex := setupExample(t)
	const resync = 30 * time.Second
	mark := c.Topo.External.Mark()
	stop := stream(t, ex.paul, topology.ExternalIP, "flush")
	defer stop()
	if err := arrivedFrom(c, mark, "flush", ex.egressIP, 20); err != nil {
		t.Fatal(err)
	}
	// Earlier tests may have moved the IP: the gateway is whoever holds it now.
	nodes := []*topology.Node{currentGateway(t, c)}
	if ex.paul.Node != nodes[0] {
		nodes = append(nodes, ex.paul.Node)
	}
	before := map[*topology.Node]float64{}
	for _, n := range nodes {
		v, err := agentMetric(n, "egressgw_agent_nft_repairs_total")
		if err != nil {
			t.Fatal(err)
		}
		before[n] = v
	}
	for _, n := range nodes {
		if err := topology.Nft(n.NS, "delete table ip egressgw\n"); err != nil {
			t.Fatal(err)
		}
	}
	flushed := time.Now()
	for _, n := range nodes {
		if err := eventually(resync+5*time.Second, func() error {
			v, err := agentMetric(n, "egressgw_agent_nft_repairs_total")
			if err == nil && v <= before[n] {
				err = fmt.Errorf("no repair yet on %s", n.Name)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s repaired its table %s after the flush", n.Name, time.Since(flushed).Round(time.Millisecond))
	}
	after := c.Topo.External.Mark()
	if err := arrivedFrom(c, after, "flush", ex.egressIP, 20); err != nil {
		t.Fatalf("after the repair: %v", err)
	}
	sent := stop()
	var arrived int
	for _, p := range c.Topo.External.PacketsSince(mark, func(p topology.Packet) bool { return strings.HasPrefix(p.Payload, "flush-") }) {
		arrived++
		if p.Src != ex.egressIP {
			t.Errorf("leak: %s (payload %q)", p, p.Payload)
		}
	}
	t.Logf("sent %d datagrams; %d arrived, all from %s", sent, arrived, ex.egressIP)
}
