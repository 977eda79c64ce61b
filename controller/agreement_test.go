package controller

import (
	"maps"
	"testing"
	"time"

	"github.com/egressgw/egressgw/apiserver/apis/networking"
	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/apiserver/routing"
	"github.com/egressgw/egressgw/apiserver/routing/routingtest"
)

// TestAgreement: the policy status the controller decides says of every pod what the
// node agent programs and the aggregated API's views show (routingtest's table, which
// the other two are held to in their own TestAgreement).
func TestAgreement(t *testing.T) {
	for _, tc := range routingtest.Cases() {
		t.Run(tc.Name, func(t *testing.T) {
			in := agreementInputs(tc)
			d := decide(in)

			// The table's nodes hold what the gateways' status shows: a controller keeps it.
			kept := map[networking.ObjectRef]map[string]string{}
			for _, g := range tc.Groups {
				kept[networking.ObjectRef{Kind: networking.KindNetworkGatewayGroup, Namespace: g.Namespace, Name: g.Name}] = g.Status.FloatingIPs
			}
			for _, g := range tc.Legacy {
				kept[networking.ObjectRef{Kind: networking.KindAnthosNetworkGateway, Namespace: g.Namespace, Name: g.Name}] = g.Status.FloatingIPs
			}
			for _, w := range d.gateways {
				if !maps.Equal(w.status.FloatingIPs, kept[w.id]) {
					t.Errorf("%s: status.floatingIPs %v, want the placements kept: %v", w.id, w.status.FloatingIPs, kept[w.id])
				}
			}
			if len(d.grantWrites) != 0 {
				t.Errorf("the grants change although every node holds what its spec grants: %+v", d.grantWrites)
			}

			// A policy the pass does not write keeps the status it has.
			statuses := map[string]v1.EgressNATPolicyStatus{}
			for _, p := range in.policies {
				statuses[p.Name] = p.Status
			}
			for _, w := range d.policies {
				statuses[w.obj.Name] = w.status
			}
			for _, p := range tc.Policies {
				want, ok := tc.WantPolicies[p.Name]
				if !ok {
					t.Fatalf("the table has no status for policy %s", p.Name)
				}
				if got := policyWantOf(statuses[p.Name]); got != want {
					t.Errorf("policy %s: the controller writes %+v, want %+v", p.Name, got, want)
				}
			}
			for key, want := range tc.Want {
				if want.Policy == "" {
					continue
				}
				got := policyWantOf(statuses[want.Policy])
				verdict := routing.Drop
				if got.Ready {
					verdict = routing.SNAT
				}
				if got.EgressIP != want.EgressIP || got.GatewayNode != want.GatewayNode || verdict != want.Verdict {
					t.Errorf("%s: its policy %s's status says %s on node %q (%s), want %s on node %q (%s)",
						key, want.Policy, got.EgressIP, got.GatewayNode, verdict, want.EgressIP, want.GatewayNode, want.Verdict)
				}
			}
		})
	}
}

// agreementInputs are a case's objects as gather reads them, every node Up and none lapsed.
func agreementInputs(tc routingtest.Case) inputs {
	now := routingtest.Epoch.Add(time.Hour)
	in := inputs{now: now, nextDown: now.Add(time.Second), up: map[string]bool{}, lapsed: map[string]bool{}}
	for _, g := range tc.Groups {
		in.groups = append(in.groups, *g)
	}
	for _, g := range tc.Legacy {
		in.legacy = append(in.legacy, *g)
	}
	for _, r := range tc.Reports {
		in.reports = append(in.reports, *r)
		in.up[r.Name] = true
	}
	for _, n := range tc.Nodes {
		in.nodes = append(in.nodes, *n)
	}
	for _, p := range tc.Policies {
		in.policies = append(in.policies, *p)
	}
	return in
}
