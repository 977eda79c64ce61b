package dataplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/test/cluster"
	"github.com/egressgw/egressgw/test/topology"
)

// BenchmarkThroughput measures one TCP stream (iperf3, 3 s per iteration) from a pod to
// the external host through the gateway on another node, against two baselines in the
// same run, from a pod on the same node that no policy selects:
//   - via-gateway: plain kernel forwarding through the gateway node (a policy route on
//     the pod's node) and nft masquerade on the gateway node (the pod's node keeps the
//     pod's IP, as egressgw's source node does): the same hops both ways without
//     egressgw, replies included. Target: ratio >= 0.9.
//   - direct: plain forwarding and masquerade on the pod's own node, one hop fewer.
//
// The three alternate, so drift hits all of them.
func BenchmarkThroughput(b *testing.B) {
	c, ex := setupExample(b)
	stop := iperfServer(b, c)
	defer stop()
	viaGateway := baseline(b, c, ex.backend, ex.gateway)
	defer func() {
		if err := viaGateway(false); err != nil {
			b.Error(err)
		}
	}()
	var gateway, via, direct []float64
	for b.Loop() {
		for _, run := range []struct {
			pod  *cluster.Pod
			via  bool
			into *[]float64
		}{{ex.paul, false, &gateway}, {ex.backend, true, &via}, {ex.backend, false, &direct}} {
			if run.via {
				if err := viaGateway(true); err != nil {
					b.Fatal(err)
				}
			}
			gbps, err := iperf(run.pod)
			if run.via {
				if err := viaGateway(false); err != nil {
					b.Fatal(err)
				}
			}
			if err != nil {
				b.Fatal(err)
			}
			*run.into = append(*run.into, gbps)
		}
	}
	g, v, d := median(gateway), median(via), median(direct)
	b.ReportMetric(g, "egressgw-Gbit/s")
	b.ReportMetric(v, "via-gateway-Gbit/s")
	b.ReportMetric(d, "direct-Gbit/s")
	b.ReportMetric(g/v, "ratio-via-gateway")
	b.ReportMetric(g/d, "ratio-direct")
	b.Logf("egressgw %.2v, via the gateway node %.2v, direct %.2v Gbit/s", gateway, via, direct)
}

// baseline returns a switch for the via-gateway baseline: pod's packets to the external
// host are routed to the gateway node gw, which forwards them (without redirecting the
// sender to the router) and masquerades them, while pod's own node keeps the pod's IP,
// as egressgw's source node does. From the other rack, the router does the routing to
// gw, by a rule for pod's packets that come in from that rack: the same hops as the
// routed way, without the outer header. It checks that the baseline is what it says (the
// external host sees gw's IP), and leaves it off.
func baseline(b *testing.B, c *cluster.Cluster, pod *cluster.Pod, gw *topology.Node) func(on bool) error {
	b.Helper()
	node := pod.Node
	type cmd struct {
		ns   string
		args []string
	}
	var route []cmd
	if node.Rack == gw.Rack {
		route = []cmd{
			{node.NS, []string{"ip", "route", "add", "default", "via", gw.IP.String(), "dev", "eth0", "table", "4242"}},
			{node.NS, []string{"ip", "rule", "add", "from", pod.IP.String(), "to", topology.ExternalIP.String(), "lookup", "4242", "pref", "100"}},
		}
	} else {
		route = []cmd{
			{c.Topo.Router, []string{"ip", "route", "add", "default", "via", gw.IP.String(), "dev", "eth0", "table", "4242"}},
			{c.Topo.Router, []string{"ip", "rule", "add", "iif", "eth2", "from", pod.IP.String(), "to", topology.ExternalIP.String(), "lookup", "4242", "pref", "100"}},
		}
	}
	// An identity SNAT ahead of the node's masquerade keeps the pod's IP on its way to
	// the gateway node, whose own masquerade then applies.
	keepSource := "add table ip egwbench; add chain ip egwbench post { type nat hook postrouting priority srcnat - 2 ; }; " +
		"add rule ip egwbench post ip saddr " + pod.IP.String() + " ip daddr " + topology.ExternalIP.String() + " snat to ip saddr"
	routed := false
	viaGateway := func(on bool) error {
		if on == routed {
			return nil
		}
		routed = on
		for _, r := range route {
			args := r.args
			if !on {
				args = slices.Clone(args)
				args[2] = "del"
			}
			if _, err := topology.Exec(r.ns, args...); err != nil {
				return err
			}
		}
		nft := []string{"nft", keepSource}
		if !on {
			nft = []string{"nft", "delete table ip egwbench"}
		}
		if _, err := topology.Exec(node.NS, nft...); err != nil {
			return err
		}
		_, err := topology.Exec(gw.NS, "sysctl", "-qw", "net.ipv4.conf.all.send_redirects="+map[bool]string{true: "0", false: "1"}[on], "net.ipv4.conf.eth0.send_redirects="+map[bool]string{true: "0", false: "1"}[on])
		return err
	}
	if err := viaGateway(true); err != nil {
		b.Fatal(err)
	}
	if src, err := pod.WhoTCP(context.Background(), topology.ExternalIP); err != nil || src.Addr() != gw.IP {
		_ = viaGateway(false)
		b.Fatalf("via the gateway, the external host saw %v (%v), want the gateway node's IP %s", src, err, gw.IP)
	}
	if err := viaGateway(false); err != nil {
		b.Fatal(err)
	}
	return viaGateway
}

// BenchmarkThroughputRouted is BenchmarkThroughput from the other rack: one TCP stream
// from the rack-2 pod, wrapped in IPv4 to the egress IP and unwrapped by the gateway in
// rack 1, against the same hops without egressgw from an unselected pod on the same node
// (rack-2 node → router → gateway node, forwarded and masqueraded there → router →
// external host; replies back the same way): plain forwarding plus masquerade over the
// same hops. Target: ratio >= 0.9. The two alternate.
func BenchmarkThroughputRouted(b *testing.B) {
	c, ex := setupExample(b)
	gw := currentGateway(b, c)
	stop := iperfServer(b, c)
	defer stop()
	viaGateway := baseline(b, c, ex.rack2Bob, gw)
	defer func() {
		if err := viaGateway(false); err != nil {
			b.Error(err)
		}
	}()
	var routed, via []float64
	for b.Loop() {
		gbps, err := iperf(ex.rack2)
		if err != nil {
			b.Fatal(err)
		}
		routed = append(routed, gbps)
		if err := viaGateway(true); err != nil {
			b.Fatal(err)
		}
		gbps, err = iperf(ex.rack2Bob)
		if err := errors.Join(err, viaGateway(false)); err != nil {
			b.Fatal(err)
		}
		via = append(via, gbps)
	}
	r, v := median(routed), median(via)
	b.ReportMetric(r, "routed-Gbit/s")
	b.ReportMetric(v, "via-gateway-Gbit/s")
	b.ReportMetric(r/v, "ratio-via-gateway")
	b.Logf("routed %.2v, via the gateway node %.2v Gbit/s", routed, via)
}

// iperfServer runs iperf3's server on the external host until stop.
func iperfServer(b *testing.B, c *cluster.Cluster) (stop func()) {
	b.Helper()
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Fatal("iperf3 is not installed (hack/install-deps.sh installs it)")
	}
	server := exec.Command("ip", "netns", "exec", c.Topo.External.NS, "iperf3", "-s", "-B", topology.ExternalIP.String(), "-p", "5201")
	if err := server.Start(); err != nil {
		b.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	return func() { _ = server.Process.Kill(); _ = server.Wait() }
}

func iperf(pod *cluster.Pod) (float64, error) {
	for attempt := 0; attempt < 5; attempt++ { // the server takes one client at a time
		out, err := topology.Exec(pod.NS, "iperf3", "-c", topology.ExternalIP.String(), "-p", "5201", "-t", "3", "-J")
		if err != nil {
			if strings.Contains(out, "busy") {
				time.Sleep(200 * time.Millisecond)
				continue
			}
			return 0, err
		}
		var r struct {
			End struct {
				SumReceived struct {
					BitsPerSecond float64 `json:"bits_per_second"`
				} `json:"sum_received"`
			} `json:"end"`
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			return 0, fmt.Errorf("iperf3 said %.300s: %w", out, err)
		}
		return r.End.SumReceived.BitsPerSecond / 1e9, nil
	}
	return 0, fmt.Errorf("the iperf3 server stayed busy")
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkPolicyChange measures a policy change until the dataplane acts on it, end to
// end: from the EgressNATPolicy update's return to the first packet the external host
// sees with the new source. Paul's pod sends a new UDP flow every millisecond to a second
// address; each iteration adds that address to the policy (then the packets must leave
// with the egress IP) and removes it (then with paul's node IP). Both changes count.
// Target: p99 <= 200 ms.
func BenchmarkPolicyChange(b *testing.B) {
	c, ex := setupExample(b)
	ctx := context.Background()
	policies := c.Net.NetworkingV1().EgressNATPolicies()
	original, err := policies.Get(ctx, "egress", metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			p, err := policies.Get(ctx, "egress", metav1.GetOptions{})
			if err != nil {
				return err
			}
			p.Spec.Destinations = original.Spec.Destinations
			_, err = policies.Update(ctx, p, metav1.UpdateOptions{})
			return err
		})
		if err != nil {
			b.Errorf("restoring the policy: %v", err)
		}
	}()
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	tag := fmt.Sprintf("pc%d-", os.Getpid())
	go sendFlows(sctx, ex.paul, topology.ExternalIP2, tag)

	var latencies []time.Duration
	change := func(add bool, want netip.Addr) {
		mark := c.Topo.External.Mark()
		// The controller writes the policy's status meanwhile: a conflict means read again.
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			p, err := policies.Get(ctx, "egress", metav1.GetOptions{})
			if err != nil {
				return err
			}
			p.Spec.Destinations = slices.Clone(original.Spec.Destinations)
			if add {
				p.Spec.Destinations = append(p.Spec.Destinations, v1.Destination{CIDR: topology.ExternalIP2.String() + "/32"})
			}
			_, err = policies.Update(ctx, p, metav1.UpdateOptions{})
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		changed := time.Now()
		deadline := changed.Add(10 * time.Second)
		for time.Now().Before(deadline) {
			seen := c.Topo.External.PacketsSince(mark, func(p topology.Packet) bool {
				return strings.HasPrefix(p.Payload, tag) && p.Src == want && p.At.After(changed)
			})
			if len(seen) > 0 {
				latencies = append(latencies, seen[0].At.Sub(changed))
				return
			}
			time.Sleep(time.Millisecond)
		}
		b.Fatalf("no packet left with %s within 10 s of the change\n%s", want, c.Diagnose())
	}
	for b.Loop() {
		change(true, ex.egressIP)
		change(false, ex.paul.Node.IP)
	}
	slices.Sort(latencies)
	q := func(f float64) float64 {
		return float64(latencies[int(f*float64(len(latencies)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(latencies[len(latencies)-1].Microseconds())/1000, "max-ms")
	// The agents' peak memory, after everything the package did to them so far.
	var peak int64
	for _, n := range c.Topo.Nodes {
		rss, err := c.Agent(n.Name).PeakRSS()
		if err != nil {
			b.Fatal(err)
		}
		peak = max(peak, rss)
	}
	b.ReportMetric(float64(peak)/(1<<20), "agent-peak-RSS-MB")
}

// sendFlows sends one datagram a millisecond from pod to dst, each from a new socket (a
// new flow, classified afresh), until ctx ends.
func sendFlows(ctx context.Context, pod *cluster.Pod, dst netip.Addr, tag string) {
	addr := netip.AddrPortFrom(dst, topology.ServicePort).String()
	for seq := 0; ctx.Err() == nil; seq++ {
		conn, err := topology.Dial(ctx, pod.NS, "udp4", addr)
		if err == nil {
			_, _ = conn.Write([]byte(tag + strconv.Itoa(seq)))
			conn.Close()
		}
		time.Sleep(time.Millisecond)
	}
}
