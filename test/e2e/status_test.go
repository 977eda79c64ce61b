package e2e

import (
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/egressgw/egressgw/test/cluster"
	"github.com/egressgw/egressgw/test/standin"
)

// TestSpecTwoNodeStatus applies the spec's two-node example, with its status, verbatim
// (v1-networkgatewaygroup-status.yaml), and checks that the controller writes the status
// the spec shows: worker1 and worker2 Up, and their three IPs spread with worker1 holding
// two; then that a node that stops is Down and its IP moves, the spec's "Or Down".
//
// The example's IPs, 192.168.1.100 to .102, are on its nodes' segment, 192.168.1.0/24.
// The topology's nodes are on 198.51.100.0/24, so none of them can hold those IPs. The
// test therefore stands in for the agents of the spec's two nodes, worker1 and worker2:
// it registers their Node objects, reports 192.168.1.0/24 in their NetworkGatewayNode
// status, renews their heartbeat Leases and acknowledges their grants, as an agent does.
// What decides the status is real: the controller, the webhook and the API server. No
// address of 192.168.1.0/24 is configured anywhere and no packet is sent to one. The
// topology's nodes take part as what they are, nodes whose subnets do not contain the
// gateway's IPs: the status must not list them.
func TestSpecTwoNodeStatus(t *testing.T) {
	c := need(t)
	agents := standin.Start(t, c.CP.Config, map[string]string{"worker1": "192.168.1.11/24", "worker2": "192.168.1.12/24"},
		standin.LeaseDuration(leaseDuration))

	// Placement is sticky, so both nodes must be known Up before the example's IPs are
	// placed. A throwaway gateway on their segment shows when the controller sees them.
	const probeIP = "192.168.1.120"
	probe := gatewayYAML("e2e-standin-probe", probeIP)
	t.Cleanup(func() { _, _ = c.Kubectl([]byte(probe), "delete", "--ignore-not-found", "-f", "-") })
	kubectl(t, c, probe, "apply", "-f", "-")
	if err := eventually(time.Minute, func() error {
		s, err := getGatewayStatus(c, "networkgatewaygroup", "e2e-standin-probe")
		if err == nil && (s.Nodes["worker1"] != "Up" || s.Nodes["worker2"] != "Up") {
			err = fmt.Errorf("the controller sees %v", s.Nodes)
		}
		return err
	}); err != nil {
		t.Fatalf("the stand-in nodes never showed Up: %v", err)
	}
	kubectl(t, c, probe, "delete", "-f", "-")
	if err := waitReleased(c, []string{probeIP}, time.Minute); err != nil {
		t.Fatal(err)
	}

	path := specFile("v1-networkgatewaygroup-status.yaml")
	t.Cleanup(func() {
		if _, err := c.Kubectl(nil, "delete", "--ignore-not-found", "-f", path); err != nil {
			t.Error(err)
		}
	})
	kubectl(t, c, "", "apply", "-f", path)

	t.Run("the controller writes the spec's status", func(t *testing.T) {
		want := gatewayStatus{
			Nodes:       map[string]string{"worker1": "Up", "worker2": "Up"},
			FloatingIPs: map[string]string{"192.168.1.100": "worker1", "192.168.1.101": "worker2", "192.168.1.102": "worker1"},
		}
		// Exactly the spec's: one node holds two IPs, and the topology's nodes, whose
		// subnets do not contain them, are not listed.
		waitGatewayStatus(t, c, "default", want)
	})

	t.Run("a node that stops is Down and its IP moves", func(t *testing.T) {
		agents.Stop("worker2")
		waitGatewayStatus(t, c, "default", gatewayStatus{
			Nodes:       map[string]string{"worker1": "Up", "worker2": "Down"},
			FloatingIPs: map[string]string{"192.168.1.100": "worker1", "192.168.1.101": "worker1", "192.168.1.102": "worker1"},
		})
		if err := eventually(30*time.Second, func() error {
			out, err := c.Kubectl(nil, "describe", "networkgatewaygroup", "default", "-n", "kube-system")
			if err == nil && !containsAll(out, "FloatingIPMoved", "192.168.1.101 moved from node worker2 to node worker1 (NodeDown)") {
				err = fmt.Errorf("no FloatingIPMoved event for 192.168.1.101:\n%s", out)
			}
			return err
		}); err != nil {
			t.Error(err)
		}
	})
}

// waitGatewayStatus waits until `kubectl get networkgatewaygroup name -n kube-system`
// shows exactly want's nodes and floating IPs.
func waitGatewayStatus(t testing.TB, c *cluster.Cluster, name string, want gatewayStatus) {
	t.Helper()
	var got gatewayStatus
	if err := eventually(time.Minute, func() (err error) {
		got, err = getGatewayStatus(c, "networkgatewaygroup", name)
		if err == nil && (!maps.Equal(got.Nodes, want.Nodes) || !maps.Equal(got.FloatingIPs, want.FloatingIPs)) {
			err = fmt.Errorf("status %+v, want %+v", got, want)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}
