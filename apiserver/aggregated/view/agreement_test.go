package view

import (
	"net/netip"
	"testing"

	"github.com/egressgw/egressgw/apiserver/apis/egress/v1alpha1"
	"github.com/egressgw/egressgw/apiserver/apis/networking"
	"github.com/egressgw/egressgw/apiserver/routing"
	"github.com/egressgw/egressgw/apiserver/routing/routingtest"
)

// TestAgreement: the views say of every pod what the node agent programs and the
// controller writes into policy status (routingtest's table, which the other two are
// held to in their own TestAgreement).
func TestAgreement(t *testing.T) {
	for _, tc := range routingtest.Cases() {
		t.Run(tc.Name, func(t *testing.T) {
			s := New(nil, DefaultWatchHistory)
			for _, n := range tc.Namespaces {
				s.SetNamespace(n)
			}
			for _, n := range tc.Nodes {
				s.SetNode(n)
			}
			for _, r := range tc.Reports {
				s.SetNodeReport(r)
			}
			for _, g := range tc.Groups {
				s.SetGateway(networking.KindNetworkGatewayGroup, g.Namespace, g.Name, g.Spec.FloatingIPs, g.Status.FloatingIPs, g.Status.Standbys, g.ResourceVersion)
			}
			for _, g := range tc.Legacy {
				s.SetGateway(networking.KindAnthosNetworkGateway, g.Namespace, g.Name, g.Spec.FloatingIPs, g.Status.FloatingIPs, g.Status.Standbys, g.ResourceVersion)
			}
			for _, p := range tc.Policies {
				s.SetPolicy(p)
			}
			for _, p := range tc.Pods {
				s.SetPod(p)
			}
			s.Synced()
			for _, p := range tc.Pods {
				key := p.Namespace + "/" + p.Name
				view, err := s.PodEgress(p.Namespace, p.Name)
				if err != nil {
					t.Fatalf("%s: %v", key, err)
				}
				if got, want := viewAnswer(view, tc.Destination), tc.Want[key]; got != want {
					t.Errorf("%s: the views say %+v, want %+v", key, got, want)
				}
			}
		})
	}
}

// viewAnswer reads a PodEgress as routingtest states answers: the route that contains the
// destination, and the status of its policy.
func viewAnswer(v *v1alpha1.PodEgress, dst netip.Addr) routingtest.Want {
	var best *v1alpha1.Route
	bits := -1
	for i, r := range v.Routes {
		if p, err := netip.ParsePrefix(r.Destination); err == nil && p.Contains(dst) && p.Bits() > bits {
			best, bits = &v.Routes[i], p.Bits()
		}
	}
	if best == nil {
		return routingtest.Want{Verdict: routing.Masquerade}
	}
	w := routingtest.Want{Policy: best.Policy, Verdict: routing.Drop}
	if best.Verdict == v1alpha1.VerdictSNAT {
		w.Verdict = routing.SNAT
	}
	for _, p := range v.Policies {
		if p.Name == best.Policy {
			w.EgressIP, w.GatewayNode = p.EgressIP, p.GatewayNode
		}
	}
	return w
}
