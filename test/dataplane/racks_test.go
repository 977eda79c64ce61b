package dataplane

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/egressgw/egressgw/test/cluster"
	"github.com/egressgw/egressgw/test/topology"
)

// The second rack: node4 is on 198.51.100.128/25, behind the router, and the egress IP
// (198.51.100.100) is on rack 1's 198.51.100.0/25. Its selected pod's packets cross the
// router wrapped in IPv4 to the egress IP, and the holder unwraps and SNATs them. The
// spec's walk, the large transfers and frag-needed run from the rack-2 pod as well (in
// dataplane_test.go); these tests check what is particular to the routed way.

// TestRoutedPathIsTaken: the rack-2 pod's selected traffic leaves with the egress IP, and
// it went the routed way: the rack-2 node's egw_from_pod counted it for the routed path
// and wrapped it, the gateway unwrapped it, and nothing on the rack-2 node went the
// segment's way (it has no uplink on the egress IP's subnet). The views say so too:
// kubectl get podegress shows the Routed path with its 20 bytes, the policy's view lists
// node4 as routed, and a preview walks the packet through the wrapping.
func TestRoutedPathIsTaken(t *testing.T) {
	c, ex := setupExample(t)
	ctx := context.Background()
	gw := currentGateway(t, c)
	counter := func(n *topology.Node, verdict string) float64 {
		t.Helper()
		v, err := agentMetric(n, "egressgw_agent_packets_total", `verdict="`+verdict+`"`)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	routedBefore, wrappedBefore, unwrappedBefore := counter(ex.rack2.Node, "from_pod_route"), counter(ex.rack2.Node, "uplink_out_encap"), counter(gw, "uplink_in_decap")
	steeredBefore := counter(ex.rack2.Node, "uplink_out_steer")
	if err := egressesAs(ctx, ex.rack2, ex.egressIP, 30*time.Second); err != nil {
		t.Fatalf("the rack-2 pod: %v\n%s", err, c.Diagnose())
	}
	for name, got := range map[string]float64{
		"rack-2 node's from_pod_route":   counter(ex.rack2.Node, "from_pod_route") - routedBefore,
		"rack-2 node's uplink_out_encap": counter(ex.rack2.Node, "uplink_out_encap") - wrappedBefore,
		"gateway's uplink_in_decap":      counter(gw, "uplink_in_decap") - unwrappedBefore,
	} {
		if got < 1 {
			t.Errorf("%s counted %.0f packets: the routed way was not taken", name, got)
		}
	}
	if got := counter(ex.rack2.Node, "uplink_out_steer") - steeredBefore; got != 0 {
		t.Errorf("the rack-2 node sent %.0f packets the segment's way, to a virtual MAC no switch of its own can reach", got)
	}

	t.Run("kubectl get podegress", func(t *testing.T) {
		out, err := c.Kubectl(nil, "get", "podegresses", "-n", "alice", "frontend-rack2", "-o",
			`jsonpath={.policies[0].path} {.policies[0].overheadBytes} {.routes[0].path} {.routes[0].overheadBytes}`)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(out); got != "Routed 20 Routed 20" {
			t.Errorf("the rack-2 pod's view says %q, want the Routed path with 20 bytes", got)
		}
		out, err = c.Kubectl(nil, "get", "podegresses", "-n", "paul", "frontend", "-o", `jsonpath={.routes[0].path}`)
		if err != nil || strings.TrimSpace(out) != "OnSegment" {
			t.Errorf("paul's frontend, on rack 1, says %q (%v), want OnSegment", out, err)
		}
	})
	t.Run("the policy's view", func(t *testing.T) {
		out, err := c.Kubectl(nil, "get", "egresspolicyviews", "egress", "-o", `jsonpath={range .paths[*]}{.path}:{.overheadBytes}:{.nodes}{"\n"}{end}`)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, `Routed:20:["`+ex.rack2.Node.Name+`"]`) || !strings.Contains(out, "OnSegment:") {
			t.Errorf("the policy's view lists the paths\n%s\nwant %s routed (20 bytes), and the rack-1 nodes on the segment", out, ex.rack2.Node.Name)
		}
	})
	t.Run("a preview", func(t *testing.T) {
		p, err := previewPath(c, "alice", "frontend-rack2", topology.ExternalIP)
		if err != nil {
			t.Fatal(err)
		}
		if p.Verdict != "SNAT" || p.SourceIP != ex.egressIP.String() || p.Path != "Routed" || p.OverheadBytes != 20 {
			t.Errorf("the preview says %+v, want SNAT to %s on the Routed path, 20 bytes", p, ex.egressIP)
		}
	})
}

// pathResult is the part of an EgressPreview's answer these tests read.
type pathResult struct {
	Verdict       string `json:"verdict"`
	SourceIP      string `json:"sourceIP"`
	Path          string `json:"path"`
	OverheadBytes int    `json:"overheadBytes"`
}

// previewPath asks the aggregated API, with kubectl create, for the path of a TCP packet
// from the pod to dst:443.
func previewPath(c *cluster.Cluster, ns, pod string, dst netip.Addr) (pathResult, error) {
	out, err := c.Kubectl([]byte(fmt.Sprintf(`apiVersion: egress.egressgw.io/v1alpha1
kind: EgressPreview
spec:
  source:
    namespace: %s
    name: %s
  destination: %q
  protocol: TCP
  port: 443
`, ns, pod, dst)), "create", "-f", "-", "-o", `jsonpath={.status.verdict} {.status.sourceIP} {.status.path} {.status.overheadBytes}`)
	if err != nil {
		return pathResult{}, err
	}
	var p pathResult
	_, err = fmt.Sscan(out, &p.Verdict, &p.SourceIP, &p.Path, &p.OverheadBytes)
	return p, err
}

// TestRoutedMTU: the routed way costs 20 bytes of MTU, and the pod learns it. A
// full-size ping with DF from the rack-2 pod gets frag-needed from its own node, with
// the MTU the routed table leaves (1480), and a ping that fits goes through. (Full-size
// TCP, 16 MiB each way, is TestLargeTransfers.)
func TestRoutedMTU(t *testing.T) {
	_, ex := setupExample(t)
	pod := ex.rack2
	// Forget what earlier tests taught the pod about the path (TestFragNeededReachesThePod).
	if out, err := pod.Exec("ip", "route", "flush", "cache"); err != nil {
		t.Fatalf("flushing the pod's route cache: %v: %s", err, out)
	}
	out, _ := pod.Exec("ping", "-n", "-c", "2", "-i", "0.2", "-W", "1", "-M", "do", "-s", "1472", topology.ExternalIP.String())
	if !strings.Contains(out, "mtu = 1480") && !strings.Contains(out, "mtu=1480") {
		t.Errorf("a full-size ping with DF from the rack-2 pod did not learn the routed way's MTU of 1480:\n%s", out)
	}
	if out, err := pod.Exec("ping", "-n", "-c", "2", "-i", "0.2", "-W", "2", "-M", "do", "-s", "1452", topology.ExternalIP.String()); err != nil {
		t.Errorf("a ping that fits the routed way's MTU (1480) did not go through: %v\n%s", err, out)
	}
}

// TestRoutedFailover (its gateway comes back at the end): the gateway node fails hard
// while the rack-2 pod sends a numbered datagram every 10 ms. The IP moves within rack 1;
// the rack-2 node changes nothing (its packets go to the IP, whoever holds it), and its
// answers come back with the egress IP through the new holder. No datagram ever arrives
// from another source, and the router never sees two MACs claim the IP.
func TestRoutedFailover(t *testing.T) {
	c, ex := setupExample(t)
	w := watchFaultFrom(t, c, ex, "rack2-failover", ex.rack2)
	gw := failAndResume(t, c, ex, w)
	w.announced(t, c, ex.egressIP, gw)
	w.check(t, c, ex.egressIP)
}
