package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/egressgw/egressgw/test/cluster"
	"github.com/egressgw/egressgw/test/topology"
)

// TestLegacyV1alpha1: the legacy API still works end to end. An AnthosNetworkGateway and
// a v1alpha1 EgressNATPolicy with egressSourceIP send a pod's packets out with that IP;
// and an egressSourceIP that no node can hold produces the spec's UnknownEgressIP event.
func TestLegacyV1alpha1(t *testing.T) {
	c := need(t)

	t.Run("egressSourceIP of an AnthosNetworkGateway", func(t *testing.T) {
		const ns, name = "e2e-legacy", "e2e-legacy"
		kubectl(t, c, namespaceYAML(ns), "apply", "-f", "-")
		apply(t, c, fmt.Sprintf(`apiVersion: networking.gke.io/v1alpha1
kind: AnthosNetworkGateway
metadata:
  namespace: kube-system
  name: %[1]s
spec:
  floatingIPs:
  - %[2]s
---
apiVersion: networking.gke.io/v1alpha1
kind: EgressNATPolicy
metadata:
  name: %[1]s
spec:
  egress:
  - namespaceSelector:
      matchLabels:
        e2e: %[3]s
    podSelector:
      matchLabels:
        app: client
  destinationCIDRs:
  - %[4]s
  egressSourceIP: %[2]s
`, name, legacyIP, ns, externalHost), legacyIP)
		var holder string
		if err := eventually(90*time.Second, func() error {
			s, err := getGatewayStatus(c, "anthosnetworkgateway", name)
			if err == nil && s.FloatingIPs[legacyIP] == "" {
				err = fmt.Errorf("kubectl shows AnthosNetworkGateway %s with %+v", name, s)
			}
			holder = s.FloatingIPs[legacyIP]
			return err
		}); err != nil {
			t.Fatal(err)
		}
		// Through the legacy version, kubectl shows the egress IP and its node.
		if err := eventually(30*time.Second, func() error {
			out, err := c.Kubectl(nil, "get", "egressnatpolicies.v1alpha1.networking.gke.io", name)
			if err == nil && !containsAll(out, legacyIP, holder, "True") {
				err = fmt.Errorf("kubectl get shows no %s on %s, Ready:\n%s", legacyIP, holder, out)
			}
			return err
		}); err != nil {
			t.Error(err)
		}
		pod := addPod(t, c, otherNode(t, c, holder).Name, ns, "client", "client")
		if err := waitSeenAs(pod, topology.ExternalIP, netip.MustParseAddr(legacyIP), time.Minute); err != nil {
			t.Error(err)
		}
		// The policy steers only its destination.
		if tcp, udp, err := seenAs(pod, topology.ExternalIP2); err != nil || tcp != pod.Node.IP || udp != pod.Node.IP {
			t.Errorf("to another destination the pod was seen as %s (TCP) and %s (UDP) (%v), want its node's IP %s", tcp, udp, err, pod.Node.IP)
		}
	})

	t.Run("the spec's legacy example gives UnknownEgressIP", func(t *testing.T) {
		// The spec's v1alpha1 example, verbatim: its egressSourceIP 192.168.1.100 is a
		// floating IP of its AnthosNetworkGateway, so admission accepts it, but it is on
		// the spec's segment, which no node of this cluster is on. No node can hold it:
		// that is exactly "an egressSourceIP assigned to no node". The IP is only written
		// into API objects; nothing is configured or sent to it.
		const unknownIP = "192.168.1.100"
		if err := noNodeSubnetContains(c, unknownIP); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"v1alpha1-anthosnetworkgateway-status.yaml", "v1alpha1-egressnatpolicy.yaml"} {
			path := specFile(f)
			t.Cleanup(func() {
				if _, err := c.Kubectl(nil, "delete", "--ignore-not-found", "-f", path); err != nil {
					t.Error(err)
				}
			})
			kubectl(t, c, "", "apply", "-f", path)
		}
		if err := eventually(time.Minute, func() error {
			out, err := c.Kubectl(nil, "describe", "egressnatpolicy", "egress")
			if err == nil && !containsAll(out, "UnknownEgressIP", "egress IP "+unknownIP+" is assigned to no node") {
				err = fmt.Errorf("kubectl describe shows no UnknownEgressIP event:\n%s", out)
			}
			return err
		}); err != nil {
			t.Error(err)
		}
	})
}

// noNodeSubnetContains checks, with kubectl, that no node reports a subnet containing ip.
func noNodeSubnetContains(c *cluster.Cluster, ip string) error {
	out, err := c.Kubectl(nil, "get", "networkgatewaynodes", "-n", "kube-system", "-o",
		`jsonpath={range .items[*]}{.metadata.name}{" "}{.status.interfaces[*].subnets[*]}{"\n"}{end}`)
	if err != nil {
		return err
	}
	addr := netip.MustParseAddr(ip)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		for _, s := range f[min(1, len(f)):] {
			if p, err := netip.ParsePrefix(s); err == nil && p.Contains(addr) {
				return fmt.Errorf("node %s reports %s, which contains %s: the test needs no node to be able to hold it", f[0], s, ip)
			}
		}
	}
	return nil
}
