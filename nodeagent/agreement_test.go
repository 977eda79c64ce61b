package nodeagent

import (
	"net/netip"
	"testing"

	"github.com/egressgw/egressgw/apiserver/routing"
	"github.com/egressgw/egressgw/apiserver/routing/routingtest"
)

// TestAgreement: every node's dataplane tables send each of its pods' packets where the
// controller's policy status and the aggregated API's views say (routingtest's table,
// which the other two are held to in their own TestAgreement).
func TestAgreement(t *testing.T) {
	for _, tc := range routingtest.Cases() {
		t.Run(tc.Name, func(t *testing.T) {
			var gateways []routing.Gateway
			for _, g := range tc.Groups {
				gateways = append(gateways, routing.GroupGateway(g))
			}
			for _, g := range tc.Legacy {
				gateways = append(gateways, routing.LegacyGateway(g))
			}
			namespaces := map[string]map[string]string{}
			for _, n := range tc.Namespaces {
				namespaces[n.Name] = n.Labels
			}
			var cluster []netip.Prefix
			for _, n := range tc.Nodes {
				cluster = append(cluster, routing.NodePodCIDRs(n)...)
			}
			for _, node := range tc.Nodes {
				s := snapshot{node: node.Name, policies: tc.Policies, gateways: gateways, namespaces: namespaces,
					cluster: routing.SortPrefixes(cluster), podCIDRs: routing.NodePodCIDRs(node)}
				for _, p := range tc.Pods {
					if p.Spec.NodeName == node.Name {
						s.pods = append(s.pods, p)
					}
				}
				d, err := s.desired(routing.NewTableBuilder())
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range s.pods {
					key := p.Namespace + "/" + p.Name
					if got, want := tableAnswer(t, d.table, routing.PodOf(p).IP, tc.Destination), tc.Want[key]; got != want {
						t.Errorf("%s on %s: the dataplane tables say %+v, want %+v", key, node.Name, got, want)
					}
				}
			}
		})
	}
}

// tableAnswer reads a node's table as routingtest states answers: the pod's set, its route
// that contains the destination, and the egress IP that route SNATs to.
func tableAnswer(t *testing.T, tbl routing.Table, pod, dst netip.Addr) routingtest.Want {
	t.Helper()
	set, ok := tbl.Pods[pod]
	if !ok {
		t.Fatalf("pod %s is not in the table", pod)
	}
	route, found := routing.Lookup(tableRoutes(tbl.Sets[set]), dst)
	if !found {
		return routingtest.Want{Verdict: routing.Masquerade}
	}
	r := route.Policy.Resolution
	w := routingtest.Want{Policy: route.Policy.Name, Verdict: route.Verdict, EgressIP: r.EgressIP, GatewayNode: r.Node}
	if route.Verdict == routing.SNAT {
		for _, tr := range tbl.Sets[set] {
			if tr.Route == route {
				if ip := tbl.Egress[tr.EgressID]; ip.String() != r.EgressIP {
					t.Errorf("pod %s: the route resolves to %s, and its egress id %d to %s", pod, r.EgressIP, tr.EgressID, ip)
				}
			}
		}
	}
	return w
}

func tableRoutes(trs []routing.TableRoute) []routing.Route {
	out := make([]routing.Route, len(trs))
	for i, tr := range trs {
		out[i] = tr.Route
	}
	return out
}
