package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egressgw/egressgw/apiserver/heartbeat"
	"github.com/egressgw/egressgw/controller"
	"github.com/egressgw/egressgw/test/controlplane"
	"github.com/egressgw/egressgw/test/topology"
)

// Leader returns the controller replica that holds the leadership, from the leader
// election Lease: its holder identity names the replica's heartbeat address.
func (c *Cluster) Leader(ctx context.Context) (int, error) {
	i, _, err := c.LeaderHeartbeat(ctx)
	return i, err
}

// LeaderHeartbeat returns the replica that leads, and where it takes heartbeats and the
// key it answers with.
func (c *Cluster) LeaderHeartbeat(ctx context.Context) (int, heartbeat.Leader, error) {
	l, err := c.Kube.CoordinationV1().Leases(controlplane.WebhookNamespace).Get(ctx, controller.LeaderElectionID, metav1.GetOptions{})
	if err != nil {
		return -1, heartbeat.Leader{}, err
	}
	if l.Spec.HolderIdentity == nil {
		return -1, heartbeat.Leader{}, fmt.Errorf("nobody holds the leadership")
	}
	id := *l.Spec.HolderIdentity
	leader, err := heartbeat.ParseLeaderIdentity(id)
	if err != nil {
		return -1, heartbeat.Leader{}, err
	}
	for i, p := range c.controllers {
		if p != nil && leader.Addr == netip.AddrPortFrom(topology.ControlIP, uint16(HeartbeatPort+i)) {
			return i, leader, nil
		}
	}
	return -1, heartbeat.Leader{}, fmt.Errorf("the leader %q is none of the %d replicas", id, len(c.controllers))
}

// WaitLeader waits for a running replica other than not (-1: any) to lead.
func (c *Cluster) WaitLeader(ctx context.Context, not int, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		i, err := c.Leader(ctx)
		if err == nil && i != not && c.controllers[i].Running() {
			return i, nil
		}
		if time.Now().After(deadline) {
			return -1, fmt.Errorf("no new leader within %s (last: %d, %v)", timeout, i, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Controllers is the number of controller replicas started.
func (c *Cluster) Controllers() int { return len(c.controllers) }

// CutAPIServer makes the API server unreachable for every component, or reachable again:
// packets to the API server's address on the nodes' side are dropped, so open
// connections hang as they would behind a dead server, rather than close. Only the
// test's own client, on the host's loopback, still reaches it.
func (c *Cluster) CutAPIServer(cut bool) error {
	if !cut {
		_, err := topology.Exec(c.Topo.Control, "nft", "delete table ip egwapicut")
		return err
	}
	_, err := topology.Exec(c.Topo.Control, "nft", fmt.Sprintf("add table ip egwapicut; "+
		"add chain ip egwapicut in { type filter hook input priority -10 ; }; "+
		"add rule ip egwapicut in tcp dport %d drop; "+
		"add rule ip egwapicut in tcp sport %d drop", APIPort, APIPort))
	return err
}
