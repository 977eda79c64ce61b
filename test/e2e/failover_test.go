package e2e

import (
	"fmt"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/egressgw/egressgw/test/cluster"
	"github.com/egressgw/egressgw/test/topology"
)

// TestFailover: the gateway node fails, its agent killed and its cable pulled. kubectl
// shows the node Down and the egress IP on another node, and a pod's stream of datagrams
// to the external host comes back with the same egress IP. The time from the kill to the
// first answer is logged. The node and its agent are restored before the test ends.
func TestFailover(t *testing.T) {
	c := need(t)
	const ns, name = "e2e-failover", "e2e-failover"
	kubectl(t, c, namespaceYAML(ns), "apply", "-f", "-")
	apply(t, c, gatewayYAML(name, failoverIP)+"---\n"+policyYAML(name, name, ns, "client", externalHost), failoverIP)
	p := waitPolicyReady(t, c, name)
	old := c.Node(p.Node)
	if old == nil {
		t.Fatalf("kubectl shows the gateway node as %q, which is no node of the topology", p.Node)
	}
	egressIP := netip.MustParseAddr(failoverIP)
	// The pod runs elsewhere: its traffic must survive the gateway node, not die with it.
	pod := addPod(t, c, otherNode(t, c, old.Name).Name, ns, "client", "client")
	if err := waitSeenAs(pod, topology.ExternalIP, egressIP, time.Minute); err != nil {
		t.Fatal(err)
	}
	probe, err := cluster.StartProbe(pod.Pod, topology.ExternalIP, "e2e-failover", 20*time.Millisecond, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Stop()
	if _, err := probe.WaitAnswer(egressIP, time.Now().Add(-time.Second), 30*time.Second); err != nil {
		t.Fatal(err)
	}

	// Restore the node whatever happens, and wait until the controller sees it Up again,
	// so that the tests after this one find three healthy nodes. It runs before the
	// gateway is deleted (cleanups run last first), while its status still lists the node.
	t.Cleanup(func() { restoreNode(t, c, old, name) })
	kill := time.Now()
	if err := c.Agent(old.Name).Kill(); err != nil {
		t.Fatal(err)
	}
	if err := old.SetLink(false); err != nil {
		t.Fatal(err)
	}
	// No datagram sent from now on can pass through the old node.
	cut := probe.Sent()

	var moved gatewayStatus
	if err := eventually(time.Minute, func() (err error) {
		moved, err = getGatewayStatus(c, "networkgatewaygroup", name)
		if err == nil && (moved.Nodes[old.Name] != "Down" || moved.FloatingIPs[failoverIP] == "" || moved.FloatingIPs[failoverIP] == old.Name) {
			err = fmt.Errorf("kubectl shows %+v", moved)
		}
		return err
	}); err != nil {
		t.Fatalf("the gateway did not show %s Down with %s on another node: %v", old.Name, failoverIP, err)
	}
	now := moved.FloatingIPs[failoverIP]
	if moved.Nodes[now] != "Up" {
		t.Errorf("%s moved to %s, which kubectl shows %q", failoverIP, now, moved.Nodes[now])
	}
	if err := eventually(30*time.Second, func() error {
		q, err := getPolicy(c, name)
		if err == nil && (q.Node != now || q.EgressIP != failoverIP || q.Ready != "True") {
			err = fmt.Errorf("kubectl shows the policy %+v, want it Ready on %s with %s", q, now, failoverIP)
		}
		return err
	}); err != nil {
		t.Error(err)
	}

	back, err := probe.WaitAnswerFrom(egressIP, cut, time.Minute)
	if err != nil {
		t.Fatalf("traffic did not resume through %s: %v\n%s", now, err, c.Diagnose())
	}
	lost := probe.Lost(egressIP, cut, back.Seq)
	t.Logf("failover: %s from killing the agent of %s to the first answer with %s through %s; %d datagrams of %d lost (lease %s, grace %s)",
		back.At.Sub(kill).Round(time.Millisecond), old.Name, egressIP, now, lost, back.Seq-cut, leaseDuration, grace)
	for _, a := range probe.Answers() {
		if a.Source != egressIP {
			t.Errorf("datagram %d was answered from %s, not the egress IP %s", a.Seq, a.Source, egressIP)
		}
	}
	if lost == 0 {
		t.Errorf("no datagram was lost after the cable was pulled: the probe did not see the failure")
	}
}

// restoreNode plugs the node back in, restarts its agent, and waits until its agent is
// ready and the gateway shows the node Up.
func restoreNode(t *testing.T, c *cluster.Cluster, n *topology.Node, gateway string) {
	t.Helper()
	if err := n.SetLink(true); err != nil {
		t.Errorf("plugging %s back in: %v", n.Name, err)
	}
	if a := c.Agent(n.Name); a == nil || !a.Running() {
		if err := c.StartAgent(n.Name); err != nil {
			t.Errorf("restarting the agent of %s: %v", n.Name, err)
			return
		}
	}
	if err := eventually(time.Minute, func() error { return agentReady(n) }); err != nil {
		t.Errorf("the agent of %s did not come back: %v\n%s", n.Name, err, c.Agent(n.Name).Tail(20))
	}
	if err := eventually(time.Minute, func() error {
		s, err := getGatewayStatus(c, "networkgatewaygroup", gateway)
		if err == nil && s.Nodes[n.Name] != "Up" {
			err = fmt.Errorf("kubectl shows %s %q", n.Name, s.Nodes[n.Name])
		}
		return err
	}); err != nil {
		t.Errorf("%s is not Up again: %v", n.Name, err)
	}
}

// agentReady asks the agent's /readyz, on the node's address: ready once a pass
// programmed everything.
func agentReady(n *topology.Node) error {
	client := http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://%s:9464/readyz", n.IP))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz of %s: %s", n.Name, resp.Status)
	}
	return nil
}
