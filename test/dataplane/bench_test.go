package dataplane

import (
	"context"
	"encoding/json"
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
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Fatal("iperf3 is not installed (hack/install-deps.sh installs it)")
	}
	server := exec.Command("ip", "netns", "exec", c.Topo.External.NS, "iperf3", "-s", "-B", topology.ExternalIP.String(), "-p", "5201")
	if err := server.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = server.Process.Kill(); _ = server.Wait() }()
	time.Sleep(300 * time.Millisecond)
	// The via-gateway baseline: the backend's packets to the external host are routed to
	// the gateway node, which forwards them without redirecting the node to the router.
	node := ex.backend.Node
	route := [][]string{
		{"ip", "route", "add", "default", "via", ex.gateway.IP.String(), "dev", "eth0", "table", "4242"},
		{"ip", "rule", "add", "from", ex.backend.IP.String(), "to", topology.ExternalIP.String(), "lookup", "4242", "pref", "100"},
	}
	// An identity SNAT ahead of the node's masquerade keeps the pod's IP on its way to
	// the gateway node, whose own masquerade then applies.
	keepSource := "add table ip egwbench; add chain ip egwbench post { type nat hook postrouting priority srcnat - 2 ; }; " +
		"add rule ip egwbench post ip saddr " + ex.backend.IP.String() + " ip daddr " + topology.ExternalIP.String() + " snat to ip saddr"
	routed := false
	viaGateway := func(on bool) error {
		if on == routed {
			return nil
		}
		routed = on
		for _, args := range route {
			if !on {
				args = slices.Clone(args)
				args[2] = "del"
			}
			if _, err := topology.Exec(node.NS, args...); err != nil {
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
		_, err := topology.Exec(ex.gateway.NS, "sysctl", "-qw", "net.ipv4.conf.all.send_redirects="+map[bool]string{true: "0", false: "1"}[on], "net.ipv4.conf.eth0.send_redirects="+map[bool]string{true: "0", false: "1"}[on])
		return err
	}
	defer func() {
		if err := viaGateway(false); err != nil {
			b.Error(err)
		}
	}()
	if err := viaGateway(true); err != nil {
		b.Fatal(err)
	}
	// The baseline is what it says: the external host sees the gateway node's IP.
	if src, err := ex.backend.WhoTCP(context.Background(), topology.ExternalIP); err != nil || src.Addr() != ex.gateway.IP {
		b.Fatalf("via the gateway, the external host saw %v (%v), want the gateway node's IP %s", src, err, ex.gateway.IP)
	}
	if err := viaGateway(false); err != nil {
		b.Fatal(err)
	}
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
