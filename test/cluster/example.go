package cluster

import (
	"context"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egressgw/egressgw/test/topology"
)

// The spec's example, adapted to the topology's addresses: the NetworkGatewayGroup
// "default" with three floating IPs on the node segment, and the policy "egress" that
// sends alice's and paul's frontend pods to the external host through the gateway's first
// IP. The spec's destination 8.8.8.0/24 becomes the external host's first address; its
// second address stands for "any other destination".
var (
	ExampleFloatingIPs = []string{"198.51.100.100", "198.51.100.101", "198.51.100.102"}
	ExampleEgressIP    = ExampleFloatingIPs[0]
)

// ExampleGateway is the spec's NetworkGatewayGroup with the topology's addresses.
func ExampleGateway() string {
	return fmt.Sprintf(`apiVersion: networking.gke.io/v1
kind: NetworkGatewayGroup
metadata:
  namespace: kube-system
  name: default
spec:
  floatingIPs:
  - %s
`, strings.Join(ExampleFloatingIPs, "\n  - "))
}

// ExamplePolicy is the spec's EgressNATPolicy with the topology's external host.
func ExamplePolicy() string {
	return fmt.Sprintf(`apiVersion: networking.gke.io/v1
kind: EgressNATPolicy
metadata:
  name: egress
spec:
  sources:
  - namespaceSelector:
      matchLabels:
        user: alice
    podSelector:
      matchLabels:
        role: frontend
  - namespaceSelector:
      matchLabels:
        user: paul
    podSelector:
      matchLabels:
        role: frontend
  action: SNAT
  destinations:
  - cidr: %s/32
  gatewayRef:
    name: default
    namespace: kube-system
`, topology.ExternalIP)
}

// ApplyExample creates the namespaces alice, paul and bob (labelled user=<name>), the
// example gateway and policy, and waits until the policy is Ready: its egress IP is held.
func (c *Cluster) ApplyExample(ctx context.Context) error {
	for _, ns := range []string{"alice", "paul", "bob"} {
		if err := c.EnsureNamespace(ctx, ns, map[string]string{"user": ns}); err != nil {
			return err
		}
	}
	// Placement is sticky: an IP placed on the first node that reports stays there. Wait
	// for every node's report, so the example's IPs spread as they would on a running
	// cluster.
	if err := c.WaitNodeReports(ctx, time.Minute); err != nil {
		return err
	}
	if _, err := c.Kubectl([]byte(ExampleGateway()+"---\n"+ExamplePolicy()), "apply", "-f", "-"); err != nil {
		return err
	}
	_, err := c.WaitPolicyReady(ctx, "egress", time.Minute)
	return err
}

// WaitPolicyReady waits until the policy's egress IP is held by a node, and returns that
// node.
func (c *Cluster) WaitPolicyReady(ctx context.Context, name string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		p, err := c.Net.NetworkingV1().EgressNATPolicies().Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			for _, cond := range p.Status.Conditions {
				if cond.Type == "Ready" && cond.Status == metav1.ConditionTrue && p.Status.GatewayNode != "" {
					return p.Status.GatewayNode, nil
				}
				if cond.Type == "Ready" {
					last = cond.Message
				}
			}
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return "", fmt.Errorf("EgressNATPolicy %s not Ready within %s: %s", name, timeout, last)
}

// WaitGatewayNodeChange waits until the policy is Ready with a gateway node other than
// old, and returns it.
func (c *Cluster) WaitGatewayNodeChange(ctx context.Context, name, old string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		gw, err := c.WaitPolicyReady(ctx, name, time.Until(deadline))
		if err != nil {
			return "", err
		}
		if gw != old {
			return gw, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("EgressNATPolicy %s still names %s as its gateway node after %s", name, old, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitNodeReports waits until every node's agent has reported its interfaces.
func (c *Cluster) WaitNodeReports(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		missing := []string{}
		for _, n := range c.Topo.Nodes {
			r, err := c.Net.NetworkingV1().NetworkGatewayNodes("kube-system").Get(ctx, n.Name, metav1.GetOptions{})
			if err != nil || len(r.Status.Interfaces) == 0 {
				missing = append(missing, n.Name)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no NetworkGatewayNode report from %v within %s", missing, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
