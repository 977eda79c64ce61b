package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/egressgw/egressgw/test/cluster"
)

// TestSpecMultiGateway is the spec's "multiple egress policies and multiple gateway
// objects": gateway1, gateway2 and gateway3 in kube-system with one floating IP each, and
// egress1, egress2 and egress3 referring to them. The spec elides the policies' specs;
// here each selects its own pods (app=one, two, three), so that each policy's traffic can
// be told apart at the external host, which must see each pod with its own policy's
// egress IP. The spec's 192.168.1.100 to .102 become multiGatewayIPs on the node segment.
func TestSpecMultiGateway(t *testing.T) {
	c := need(t)
	const ns = "e2e-multi"
	kubectl(t, c, namespaceYAML(ns), "apply", "-f", "-")
	apps := []string{"one", "two", "three"}
	var docs []string
	for i, ip := range multiGatewayIPs {
		docs = append(docs, gatewayYAML(fmt.Sprintf("gateway%d", i+1), ip))
	}
	for i, app := range apps {
		docs = append(docs, policyYAML(fmt.Sprintf("egress%d", i+1), fmt.Sprintf("gateway%d", i+1), ns, app, externalHost))
	}
	apply(t, c, strings.Join(docs, "---\n"), multiGatewayIPs...)

	placed := map[string]string{} // policy → its gateway node
	t.Run("each policy takes its gateway's IP", func(t *testing.T) {
		for i, ip := range multiGatewayIPs {
			policy, gateway := fmt.Sprintf("egress%d", i+1), fmt.Sprintf("gateway%d", i+1)
			p := waitPolicyReady(t, c, policy)
			if p.EgressIP != ip {
				t.Errorf("kubectl shows %s with egress IP %s, want %s, the first floating IP of %s", policy, p.EgressIP, ip, gateway)
			}
			s, err := getGatewayStatus(c, "networkgatewaygroup", gateway)
			if err != nil {
				t.Fatal(err)
			}
			if s.FloatingIPs[ip] != p.Node {
				t.Errorf("%s places %s on %q, but %s says its gateway node is %s", gateway, ip, s.FloatingIPs[ip], policy, p.Node)
			}
			placed[policy] = p.Node
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("the gateways' IPs spread over the nodes", func(t *testing.T) {
		// Placement gives each IP to the node holding the fewest; three single-IP gateways
		// on three nodes, with no other gateway, land on three nodes, as the spec's example
		// spreads its three over its two.
		seen := map[string]string{}
		for policy, node := range placed {
			if other, ok := seen[node]; ok {
				t.Errorf("%s and %s both leave through %s: %v", other, policy, node, placed)
			}
			seen[node] = policy
		}
	})

	t.Run("each policy's pods leave with their own egress IP", func(t *testing.T) {
		pods := make([]*cluster.Pod, len(apps))
		for i, app := range apps {
			pods[i] = addPod(t, c, c.Topo.Nodes[i%len(c.Topo.Nodes)].Name, ns, "client-"+app, app)
		}
		for i, pod := range pods {
			want := netip.MustParseAddr(multiGatewayIPs[i])
			if err := waitSeenAs(pod, externalHost.Addr(), want, time.Minute); err != nil {
				t.Errorf("egress%d: %v", i+1, err)
			}
		}
	})
}
