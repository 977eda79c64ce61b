package dataplane

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egressgw/egressgw/test/testenv"
	"github.com/egressgw/egressgw/test/topology"
)

// TestRedirectingCNIIsCaught: the CNI matrix's third case. A program that redirects
// every IPv4 packet of a selected pod out of the node's uplink, past the node's routing
// (as a CNI that routes in BPF does), is attached to the pod's interface ahead of
// egressgw's while the pod streams to a policy destination. No datagram of the pod ever
// arrives with another source than the egress IP: until the agent notices, the uplink
// drops what leaves it from the pod unsteered; then the agent puts its own program first
// again and drops the pod's selected traffic there. The node's status names the pod
// (status.redirectedPods, and the program in PodsCovered), and the pod's view says Drop,
// RedirectedPastRouting. Once the program goes, the pod leaves with the egress IP again.
func TestRedirectingCNIIsCaught(t *testing.T) {
	c, ex := setupExample(t)
	ctx := context.Background()
	node := selectedPodAwayFrom(ex, currentGateway(t, c)).Node // on rack 1, not the gateway
	pod, err := c.AddPod(ctx, node.Name, "alice", "frontend-redirected", map[string]string{"role": "frontend"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.RemovePod(context.Background(), pod) })
	if err := egressesAs(ctx, pod, ex.egressIP, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	mark := c.Topo.External.Mark()
	stop := stream(t, pod, topology.ExternalIP, "redirected")
	defer stop()
	if err := arrivedFrom(c, mark, "redirected", ex.egressIP, 20); err != nil {
		t.Fatal(err)
	}
	bypassed := func() float64 {
		v, err := agentMetric(node, "egressgw_agent_packets_total", `verdict="uplink_out_bypassed"`)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	before := bypassed()

	cni, err := testenv.AttachRedirect(node.NS, pod.HostVeth, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	attached := time.Now()
	closed := false
	defer func() {
		if !closed {
			_ = cni.Close()
		}
	}()
	key := "alice/frontend-redirected"
	var caught time.Duration
	if err := eventually(30*time.Second, func() error {
		ngn, err := c.Net.NetworkingV1().NetworkGatewayNodes("kube-system").Get(ctx, node.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		covered := meta.FindStatusCondition(ngn.Status.Conditions, "PodsCovered")
		if !strings.Contains(strings.Join(ngn.Status.RedirectedPods, " "), key) || covered == nil || covered.Status != metav1.ConditionFalse ||
			!strings.Contains(covered.Message, key+": another BPF program is on its interface (tcx ingress program") || !strings.Contains(covered.Message, "test_redirect") {
			return fmt.Errorf("redirectedPods %v, PodsCovered %+v", ngn.Status.RedirectedPods, covered)
		}
		caught = time.Since(attached)
		return nil
	}); err != nil {
		t.Fatalf("%s's report never named %s: %v", node.Name, key, err)
	}
	t.Logf("%s's report named %s %s after the program was attached", node.Name, key, caught.Round(time.Millisecond))
	if err := eventually(10*time.Second, func() error {
		out, err := c.Kubectl(nil, "get", "podegresses", "-n", "alice", "frontend-redirected", "-o", `jsonpath={.policies[0].verdict} {.policies[0].reason} {.routes[0].verdict}`)
		if err == nil && strings.TrimSpace(out) != "Drop RedirectedPastRouting Drop" {
			err = fmt.Errorf("the pod's view says %q", out)
		}
		return err
	}); err != nil {
		t.Error(err)
	}
	time.Sleep(time.Second) // the stream goes on, dropped
	t.Logf("the uplink dropped %.0f of the pod's datagrams that bypassed egw_from_pod before the agent put it first again", bypassed()-before)

	if err := cni.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	back := c.Topo.External.Mark()
	if err := arrivedFrom(c, back, "redirected", ex.egressIP, 20); err != nil {
		t.Errorf("after the program went: %v", err)
	}
	stop()
	for _, p := range c.Topo.External.PacketsSince(mark, tagged("redirected")) {
		if p.Src != ex.egressIP {
			t.Errorf("leak: %s", p)
		}
	}
}
