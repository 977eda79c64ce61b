package dataplane

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/egressgw/egressgw/apiserver/apis/networking"
	"github.com/egressgw/egressgw/apiserver/heartbeat"
)

// TestHeartbeatLoad: in steady state the agents' heartbeats go to the controller's
// leader over UDP, and each node writes its heartbeat Lease at most once a second
// (every --lease-refresh, 10 s by default), although the lease is 600 ms.
func TestHeartbeatLoad(t *testing.T) {
	c, ex := setupExample(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	before := map[string]float64{}
	for _, n := range c.Topo.Nodes {
		v, err := agentMetric(n, "egressgw_agent_heartbeats_total", `event="vouched"`)
		if err != nil {
			t.Fatal(err)
		}
		before[n.Name] = v
	}
	w, err := c.Kube.CoordinationV1().Leases(networking.NodeNamespace).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	const window = 5 * time.Second
	writes := map[string]int{}
	timer := time.NewTimer(window)
	defer timer.Stop()
collect:
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatal("the Lease watch ended early")
			}
			// A watch opens with the current objects as ADDED; count only what follows.
			if ev.Type != watch.Modified {
				continue
			}
			if l, ok := ev.Object.(interface{ GetName() string }); ok && strings.HasPrefix(l.GetName(), heartbeat.LeasePrefix) {
				writes[strings.TrimPrefix(l.GetName(), heartbeat.LeasePrefix)]++
			}
		case <-timer.C:
			break collect
		}
	}
	for _, n := range c.Topo.Nodes {
		perSecond := float64(writes[n.Name]) / window.Seconds()
		t.Logf("%s: %d Lease writes in %s (%.1f/s)", n.Name, writes[n.Name], window, perSecond)
		if perSecond > 1 {
			t.Errorf("%s wrote its heartbeat Lease %d times in %s: more than once a second", n.Name, writes[n.Name], window)
		}
		v, err := agentMetric(n, "egressgw_agent_heartbeats_total", `event="vouched"`)
		if err != nil {
			t.Fatal(err)
		}
		// One beat every 100 ms: at least half of them answered and vouched for.
		if got := v - before[n.Name]; got < window.Seconds()*5 {
			t.Errorf("%s: %.0f vouched heartbeat answers in %s, want at least %.0f", n.Name, got, window, window.Seconds()*5)
		}
	}
	if gw := currentGateway(t, c); gw != ex.gateway {
		t.Logf("the gateway is %s (moved by an earlier test)", gw.Name)
	}
}

// TestLeaderChangeKeepsTraffic: a second controller replica waits; the leader is killed
// (no release). The agents renew their Leases while nobody answers, the new leader
// answers in a new term, and nothing moves: no datagram of a probe through the gateway
// is lost, no IP moves, no two MACs claim the egress IP, nothing leaks.
func TestLeaderChangeKeepsTraffic(t *testing.T) {
	c, ex := setupExample(t)
	ctx := context.Background()
	for c.Controllers() < 2 {
		if err := c.StartController(c.Controllers()); err != nil {
			t.Fatal(err)
		}
	}
	leader, err := c.WaitLeader(ctx, -1, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	w := watchFault(t, c, ex, "leader")
	if err := c.Controller(leader).Kill(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.StartController(leader); err != nil {
			t.Error(err)
		}
	})
	next, err := c.WaitLeader(ctx, leader, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// Once the agents follow the new leader, its answers vouch for their grants again.
	gwNode := w.old
	start, err := agentMetric(gwNode, "egressgw_agent_heartbeats_total", `event="vouched"`)
	if err != nil {
		t.Fatal(err)
	}
	if err := eventually(10*time.Second, func() error {
		v, err := agentMetric(gwNode, "egressgw_agent_heartbeats_total", `event="vouched"`)
		if err == nil && v < start+5 {
			err = fmt.Errorf("the new leader vouched %.0f times", v-start)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if now := currentGateway(t, c); now != w.old {
		t.Errorf("the egress IP moved from %s to %s across the leader change", w.old.Name, now.Name)
	}
	if lost := w.probe.Lost(ex.egressIP, w.seq, w.probe.Sent()-5); lost > 0 {
		t.Errorf("%d probe datagrams lost across the leader change (replica %d to %d)", lost, leader, next)
	}
	t.Logf("leader changed from replica %d to %d; the gateway stayed on %s", leader, next, w.old.Name)
	w.check(t, c, ex.egressIP)
}

// TestAPIServerOutageKeepsTraffic: the API server is unreachable for every component for
// 60 s (its packets dropped, so connections hang). The leader keeps answering heartbeats,
// so the gateway keeps its IP: no probe datagram is lost, and nothing moves, during the
// outage or after it.
func TestAPIServerOutageKeepsTraffic(t *testing.T) {
	c, ex := setupExample(t)
	w := watchFault(t, c, ex, "outage")
	if err := c.CutAPIServer(true); err != nil {
		t.Fatal(err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			if err := c.CutAPIServer(false); err != nil {
				t.Error(err)
			}
		}
	}
	defer restore()
	const outage = 60 * time.Second
	deadline := time.Now().Add(outage)
	for time.Now().Before(deadline) {
		time.Sleep(5 * time.Second)
		if lost := w.probe.Lost(ex.egressIP, w.seq, w.probe.Sent()-5); lost > 0 {
			t.Fatalf("%d probe datagrams lost %s into the API server outage\n%s",
				lost, outage-time.Until(deadline).Round(time.Second), c.Diagnose())
		}
	}
	restore()
	time.Sleep(3 * time.Second) // reconnect; the IP must stay
	if now := currentGateway(t, c); now != w.old {
		t.Errorf("the egress IP moved from %s to %s after the API server outage", w.old.Name, now.Name)
	}
	if lost := w.probe.Lost(ex.egressIP, w.seq, w.probe.Sent()-5); lost > 0 {
		t.Errorf("%d probe datagrams lost across the API server outage", lost)
	}
	t.Logf("%s outage: the gateway stayed on %s, no datagram lost", outage, w.old.Name)
	w.check(t, c, ex.egressIP)
}
