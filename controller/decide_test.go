package controller

import (
	"cmp"
	"fmt"
	"maps"
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/apiserver/routing"
	"github.com/egressgw/egressgw/apiserver/routing/routingtest"
)

// The clusters of TestDecide: nodes a and b, both on 198.51.100.0/24, gateways in
// kube-system, and policies that name them.
const (
	ip100 = "198.51.100.100"
	ip101 = "198.51.100.101"
)

var decideNow = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// tnode is a node, Up unless down, with its report: the IPs its spec grants, those its
// status says it holds, and whether its status is behind its spec.
type tnode struct {
	name                           string
	down, cordoned, lapsed, behind bool
	spec, held                     []string
}

// holding is a node whose spec grants ips and which says it holds them.
func holding(name string, ips ...string) tnode { return tnode{name: name, spec: ips, held: ips} }

// tgateway is a NetworkGatewayGroup in kube-system, created age minutes after the epoch,
// with its status.floatingIPs.
type tgateway struct {
	name   string
	age    int
	ips    []string
	placed map[string]string
}

// tpolicy names the gateway ref; was, if set, is the node its Ready status showed the
// gateway's first IP on, as the last pass wrote it.
type tpolicy struct{ name, ref, was string }

// cluster is a row's inputs. nextDown is when the first Up node turns Down (3 s when
// unset); with no node Up, never.
type cluster struct {
	nodes    []tnode
	gateways []tgateway
	policies []tpolicy
	nextDown time.Duration
}

func (c cluster) inputs() inputs {
	in := inputs{now: decideNow, up: map[string]bool{}, lapsed: map[string]bool{}}
	for _, n := range c.nodes {
		gen := int64(1)
		if n.behind {
			gen = 2
		}
		in.reports = append(in.reports, v1.NetworkGatewayNode{
			ObjectMeta: metav1.ObjectMeta{Namespace: NodeReportNamespace, Name: n.name, Generation: gen, ResourceVersion: "1"},
			Spec:       v1.NetworkGatewayNodeSpec{FloatingIPs: n.spec},
			Status: v1.NetworkGatewayNodeStatus{ObservedGeneration: 1, FloatingIPs: n.held,
				Interfaces: []v1.NodeInterface{{Name: "eth0", Subnets: []string{"198.51.100.11/24"}}}},
		})
		in.nodes = append(in.nodes, corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name}, Spec: corev1.NodeSpec{Unschedulable: n.cordoned}})
		in.up[n.name] = !n.down
		in.lapsed[n.name] = n.lapsed
	}
	// As gather does: a node seen Down has lapsed.
	noteLapsed(in.lapsed, in.reports, in.up)
	for _, n := range c.nodes {
		if !n.down {
			in.nextDown = decideNow.Add(cmp.Or(c.nextDown, 3*time.Second))
		}
	}
	firstIP := map[string]string{}
	for _, g := range c.gateways {
		in.groups = append(in.groups, v1.NetworkGatewayGroup{
			ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: g.name, Generation: 1, ResourceVersion: "1",
				CreationTimestamp: metav1.NewTime(decideNow.Add(time.Duration(g.age-60) * time.Minute))},
			Spec:   v1.NetworkGatewayGroupSpec{FloatingIPs: g.ips},
			Status: v1.NetworkGatewayGroupStatus{FloatingIPs: g.placed},
		})
		firstIP[g.name] = g.ips[0]
	}
	for _, p := range c.policies {
		pol := v1.EgressNATPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: p.name, Generation: 1, ResourceVersion: "1"},
			Spec: v1.EgressNATPolicySpec{Action: v1.ActionSNAT, GatewayRef: &v1.GatewayReference{Namespace: "kube-system", Name: p.ref},
				Destinations: []v1.Destination{{CIDR: "203.0.113.0/24"}}},
		}
		if p.was != "" {
			ip := firstIP[p.ref]
			pol.Status = v1.EgressNATPolicyStatus{EgressIP: ip, GatewayNode: p.was, Conditions: []metav1.Condition{{
				Type: v1.ConditionReady, Status: metav1.ConditionTrue, Reason: routing.ReasonReady, ObservedGeneration: 1,
				Message:            fmt.Sprintf("selected traffic leaves through node %s with source %s", p.was, ip),
				LastTransitionTime: metav1.NewTime(decideNow.Add(-time.Hour)),
			}}}
		}
		in.policies = append(in.policies, pol)
	}
	return in
}

// seen is what users see of a decision once it is written: the grants in the order
// written, the status of each gateway and policy written, the events, the moves counted
// in the metrics, and when the next pass comes though nothing changes (0: never).
type seen struct {
	grants   []string
	gateways map[string]gatewaySeen
	policies map[string]routingtest.PolicyWant
	events   []string
	moves    []string
	requeue  time.Duration
}

type gatewaySeen struct {
	floatingIPs map[string]string
	nodes       map[string]v1.NodeState
	ready       string // "True Placed: message"
}

func seenOf(d decision, now time.Time) seen {
	var s seen
	for _, w := range d.grantWrites {
		s.grants = append(s.grants, fmt.Sprintf("%s=%v", w.obj.Name, w.want))
	}
	for _, w := range d.gateways {
		if s.gateways == nil {
			s.gateways = map[string]gatewaySeen{}
		}
		s.gateways[w.obj.GetName()] = gatewaySeen{w.status.FloatingIPs, w.status.Nodes, readyOf(w.status.Conditions)}
		s.events = append(s.events, eventsOf(w.events)...)
	}
	for _, w := range d.policies {
		if s.policies == nil {
			s.policies = map[string]routingtest.PolicyWant{}
		}
		s.policies[w.obj.Name] = policyWantOf(w.status)
		s.events = append(s.events, eventsOf(w.events)...)
	}
	for _, m := range d.moves {
		s.moves = append(s.moves, fmt.Sprintf("%s %s→%s %s", m.IP, m.From, m.To, m.Reason))
	}
	if !d.requeueAt.IsZero() {
		s.requeue = d.requeueAt.Sub(now)
	}
	return s
}

func readyOf(conds []metav1.Condition) string {
	c := meta.FindStatusCondition(conds, v1.ConditionReady)
	if c == nil {
		return ""
	}
	return fmt.Sprintf("%s %s: %s", c.Status, c.Reason, c.Message)
}

func eventsOf(events []event) []string {
	var out []string
	for _, e := range events {
		out = append(out, fmt.Sprintf("%s: %s %s %s: %s", e.obj.(client.Object).GetName(), e.typ, e.reason, e.action, e.message))
	}
	return out
}

// policyWantOf reads a policy status as routingtest states it.
func policyWantOf(s v1.EgressNATPolicyStatus) routingtest.PolicyWant {
	w := routingtest.PolicyWant{EgressIP: s.EgressIP, GatewayNode: s.GatewayNode}
	if c := meta.FindStatusCondition(s.Conditions, v1.ConditionReady); c != nil {
		w.Ready, w.Reason = c.Status == metav1.ConditionTrue, c.Reason
	}
	return w
}

var bothUp = map[string]v1.NodeState{"a": v1.NodeUp, "b": v1.NodeUp}

const placedReady = "True Placed: every floating IP is held by a node"

func TestDecide(t *testing.T) {
	tests := []struct {
		name string
		in   cluster
		want seen
	}{{
		name: "new IPs are spread over the nodes, granted, and shown",
		in: cluster{nodes: []tnode{{name: "a"}, {name: "b"}},
			gateways: []tgateway{{name: "gw", ips: []string{ip100, ip101}}},
			policies: []tpolicy{{name: "p", ref: "gw"}}},
		want: seen{
			grants:   []string{"a=[198.51.100.100]", "b=[198.51.100.101]"},
			gateways: map[string]gatewaySeen{"gw": {map[string]string{ip100: "a", ip101: "b"}, bothUp, placedReady}},
			policies: map[string]routingtest.PolicyWant{"p": {EgressIP: ip100, GatewayNode: "a", Ready: true, Reason: routing.ReasonReady}},
			requeue:  3*time.Second + 10*time.Millisecond,
		},
	}, {
		name: "a Down node's IP moves at once: its grant has lapsed on its own clock",
		in: cluster{nodes: []tnode{{name: "a", down: true, spec: []string{ip100}, held: []string{ip100}}, {name: "b"}},
			gateways: []tgateway{{name: "gw", ips: []string{ip100}, placed: map[string]string{ip100: "a"}}},
			policies: []tpolicy{{name: "p", ref: "gw", was: "a"}}},
		want: seen{
			grants:   []string{"a=[]", "b=[198.51.100.100]"},
			gateways: map[string]gatewaySeen{"gw": {map[string]string{ip100: "b"}, map[string]v1.NodeState{"a": v1.NodeDown, "b": v1.NodeUp}, placedReady}},
			policies: map[string]routingtest.PolicyWant{"p": {EgressIP: ip100, GatewayNode: "b", Ready: true, Reason: routing.ReasonReady}},
			events: []string{
				"gw: Normal FloatingIPMoved Place: 198.51.100.100 moved from node a to node b (NodeDown)",
				"p: Normal EgressIPMoved Resolve: egress IP 198.51.100.100 moved from node a to node b",
			},
			moves:   []string{"198.51.100.100 a→b NodeDown"},
			requeue: 3*time.Second + 10*time.Millisecond,
		},
	}, {
		name: "a cordoned node's IP is taken from it first, and shown on it until it lets go",
		in: cluster{nodes: []tnode{{name: "a", cordoned: true, spec: []string{ip100}, held: []string{ip100}}, {name: "b"}},
			gateways: []tgateway{{name: "gw", ips: []string{ip100}, placed: map[string]string{ip100: "a"}}},
			policies: []tpolicy{{name: "p", ref: "gw", was: "a"}}},
		want: seen{
			grants:   []string{"a=[]"},
			gateways: map[string]gatewaySeen{"gw": {map[string]string{ip100: "a"}, bothUp, placedReady}},
			requeue:  time.Second,
		},
	}, {
		name: "a handover that waits comes back sooner when a node would turn Down sooner",
		in: cluster{nodes: []tnode{{name: "a", cordoned: true, spec: []string{ip100}, held: []string{ip100}}, {name: "b"}},
			gateways: []tgateway{{name: "gw", ips: []string{ip100}, placed: map[string]string{ip100: "a"}}},
			policies: []tpolicy{{name: "p", ref: "gw", was: "a"}},
			nextDown: 200 * time.Millisecond},
		want: seen{
			grants:   []string{"a=[]"},
			gateways: map[string]gatewaySeen{"gw": {map[string]string{ip100: "a"}, bothUp, placedReady}},
			requeue:  210 * time.Millisecond,
		},
	}, {
		name: "a node behind its spec still counts as holding what the gateway shows on it",
		in: cluster{nodes: []tnode{{name: "a", cordoned: true, behind: true}, {name: "b"}},
			gateways: []tgateway{{name: "gw", ips: []string{ip100}, placed: map[string]string{ip100: "a"}}},
			policies: []tpolicy{{name: "p", ref: "gw", was: "a"}}},
		want: seen{
			gateways: map[string]gatewaySeen{"gw": {map[string]string{ip100: "a"}, bothUp, placedReady}},
			requeue:  time.Second,
		},
	}, {
		name: "the handover completes once the old node's report says it let go",
		in: cluster{nodes: []tnode{{name: "a", cordoned: true}, {name: "b"}},
			gateways: []tgateway{{name: "gw", ips: []string{ip100}, placed: map[string]string{ip100: "a"}}},
			policies: []tpolicy{{name: "p", ref: "gw", was: "a"}}},
		want: seen{
			grants:   []string{"b=[198.51.100.100]"},
			gateways: map[string]gatewaySeen{"gw": {map[string]string{ip100: "b"}, bothUp, placedReady}},
			policies: map[string]routingtest.PolicyWant{"p": {EgressIP: ip100, GatewayNode: "b", Ready: true, Reason: routing.ReasonReady}},
			events: []string{
				"gw: Normal FloatingIPMoved Place: 198.51.100.100 moved from node a to node b (NodeCordoned)",
				"p: Normal EgressIPMoved Resolve: egress IP 198.51.100.100 moved from node a to node b",
			},
			moves:   []string{"198.51.100.100 a→b NodeCordoned"},
			requeue: 3*time.Second + 10*time.Millisecond,
		},
	}, {
		name: "a node back from Down does not pull its old IP back with its stale report",
		in: cluster{nodes: []tnode{{name: "a", lapsed: true, behind: true, held: []string{ip100}}, holding("b", ip100)},
			gateways: []tgateway{{name: "gw", ips: []string{ip100}, placed: map[string]string{ip100: "b"}}},
			policies: []tpolicy{{name: "p", ref: "gw", was: "b"}}},
		want: seen{
			gateways: map[string]gatewaySeen{"gw": {map[string]string{ip100: "b"}, bothUp, placedReady}},
			requeue:  3*time.Second + 10*time.Millisecond,
		},
	}, {
		name: "an IP no node's subnet contains is unplaced, and says why",
		in: cluster{nodes: []tnode{{name: "a"}, {name: "b"}},
			gateways: []tgateway{{name: "gw", ips: []string{ip100, "203.0.113.7"}}},
			policies: []tpolicy{{name: "p", ref: "gw"}}},
		want: seen{
			grants: []string{"a=[198.51.100.100]"},
			gateways: map[string]gatewaySeen{"gw": {map[string]string{ip100: "a"}, bothUp,
				"False Unplaced: 203.0.113.7: no node has a subnet containing 203.0.113.7"}},
			policies: map[string]routingtest.PolicyWant{"p": {EgressIP: ip100, GatewayNode: "a", Ready: true, Reason: routing.ReasonReady}},
			events:   []string{"gw: Warning NoNodeForFloatingIP Place: 203.0.113.7: no node has a subnet containing 203.0.113.7"},
			requeue:  3*time.Second + 10*time.Millisecond,
		},
	}, {
		name: "with every node Down an IP is unassigned, and its policy's traffic is dropped",
		in: cluster{nodes: []tnode{{name: "a", down: true, spec: []string{ip100}, held: []string{ip100}}, {name: "b", down: true}},
			gateways: []tgateway{{name: "gw", ips: []string{ip100}, placed: map[string]string{ip100: "a"}}},
			policies: []tpolicy{{name: "p", ref: "gw", was: "a"}}},
		want: seen{
			grants: []string{"a=[]"},
			gateways: map[string]gatewaySeen{"gw": {nil, map[string]v1.NodeState{"a": v1.NodeDown, "b": v1.NodeDown},
				"False Unplaced: 198.51.100.100: no Up node has a subnet containing 198.51.100.100 (2 that do are Down)"}},
			policies: map[string]routingtest.PolicyWant{"p": {EgressIP: ip100, Reason: routing.ReasonUnknownEgressIP}},
			events: []string{
				"gw: Warning NoNodeForFloatingIP Place: 198.51.100.100: no Up node has a subnet containing 198.51.100.100 (2 that do are Down)",
				"gw: Warning FloatingIPUnassigned Place: 198.51.100.100 left node a (NodeDown) and no node can take it",
				"p: Warning UnknownEgressIP Resolve: egress IP 198.51.100.100 is assigned to no node; selected traffic is dropped until a node holds it",
			},
			moves: []string{"198.51.100.100 a→ NodeDown"},
		},
	}, {
		name: "an IP two gateways list stays with the older one; the newer one is told to remove it",
		in: cluster{nodes: []tnode{{name: "a"}, {name: "b"}},
			gateways: []tgateway{{name: "new", age: 1, ips: []string{ip100}}, {name: "old", ips: []string{ip100}}}},
		want: seen{
			grants: []string{"a=[198.51.100.100]"},
			gateways: map[string]gatewaySeen{
				"new": {nil, nil, "False Unplaced: 198.51.100.100: already used by NetworkGatewayGroup kube-system/old"},
				"old": {map[string]string{ip100: "a"}, bothUp, placedReady},
			},
			events: []string{
				"new: Warning NoNodeForFloatingIP Place: 198.51.100.100: already used by NetworkGatewayGroup kube-system/old",
				"new: Warning FloatingIPConflict Place: 198.51.100.100 is already used by NetworkGatewayGroup kube-system/old, which is older and keeps it; remove it from this gateway",
			},
			requeue: 3*time.Second + 10*time.Millisecond,
		},
	}, {
		name: "a policy whose gateway does not exist is not ready; one that resolves as before is not written",
		in: cluster{nodes: []tnode{holding("a", ip100), {name: "b"}},
			gateways: []tgateway{{name: "gw", ips: []string{ip100}, placed: map[string]string{ip100: "a"}}},
			policies: []tpolicy{{name: "p", ref: "gw", was: "a"}, {name: "q", ref: "missing"}}},
		want: seen{
			gateways: map[string]gatewaySeen{"gw": {map[string]string{ip100: "a"}, bothUp, placedReady}},
			policies: map[string]routingtest.PolicyWant{"q": {Reason: routing.ReasonGatewayNotFound}},
			events:   []string{"q: Warning GatewayNotFound Resolve: NetworkGatewayGroup kube-system/missing does not exist; selected traffic is dropped until it does"},
			requeue:  3*time.Second + 10*time.Millisecond,
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := seenOf(decide(tt.in.inputs()), decideNow)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("users see\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

// TestDecideWritesOnlyWhatChanged: once a pass's writes are in place and the agents have
// caught up with their grants, the next pass writes nothing and records nothing; a
// condition keeps the time it last changed.
func TestDecideWritesOnlyWhatChanged(t *testing.T) {
	in := cluster{nodes: []tnode{{name: "a"}, {name: "b"}},
		gateways: []tgateway{{name: "gw", ips: []string{ip100, "203.0.113.7"}}, {name: "new", age: 1, ips: []string{ip101, ip100}}},
		policies: []tpolicy{{name: "p", ref: "gw"}, {name: "q", ref: "missing"}}}.inputs()
	first := decide(in)
	if len(first.gateways) != 2 || len(first.policies) != 2 || len(first.grantWrites) == 0 {
		t.Fatalf("the first pass writes %d gateways, %d policies, %d grants; want both of each and some grants", len(first.gateways), len(first.policies), len(first.grantWrites))
	}
	apply(&in, first)
	in.now = in.now.Add(time.Minute)
	if got := seenOf(decide(in), in.now); got.grants != nil || got.gateways != nil || got.policies != nil || got.events != nil {
		t.Errorf("the second pass, with nothing changed, writes %+v", got)
	}
	for _, g := range in.groups {
		if c := meta.FindStatusCondition(g.Status.Conditions, v1.ConditionReady); c == nil || !c.LastTransitionTime.Time.Equal(decideNow) {
			t.Errorf("%s: Ready condition %+v, want one that changed at the first pass (%s)", g.Name, c, decideNow)
		}
	}
}

// apply does what writing d does to the objects in, and what every agent does next: it
// holds what its spec grants, and says so.
func apply(in *inputs, d decision) {
	for _, w := range d.grantWrites {
		for i := range in.reports {
			if r := &in.reports[i]; r.Name == w.obj.Name {
				r.Spec.FloatingIPs, r.Status.FloatingIPs = w.want, w.want
				r.Generation++
				r.Status.ObservedGeneration = r.Generation
			}
		}
	}
	for _, w := range d.gateways {
		for i := range in.groups {
			if in.groups[i].Name == w.obj.GetName() {
				in.groups[i].Status = w.status
			}
		}
	}
	for _, w := range d.policies {
		for i := range in.policies {
			if in.policies[i].Name == w.obj.Name {
				in.policies[i].Status = w.status
			}
		}
	}
}

// TestDecideStandbys: the status names each IP's standby; a node that joins later changes
// no standby, though it holds nothing; and when a holder fails, its IP goes to the standby the status named, not
// to the idle newcomer.
func TestDecideStandbys(t *testing.T) {
	in := cluster{nodes: []tnode{{name: "a"}, {name: "b"}},
		gateways: []tgateway{{name: "gw", ips: []string{ip100, ip101}}}}.inputs()
	standbysOf := func(d decision) map[string]string {
		for _, w := range d.gateways {
			return w.status.Standbys
		}
		return nil
	}
	first := decide(in)
	if got, want := standbysOf(first), map[string]string{ip100: "b", ip101: "a"}; !maps.Equal(got, want) {
		t.Fatalf("standbys %v, want %v", got, want)
	}
	apply(&in, first)

	joined := cluster{nodes: []tnode{{name: "c"}}}.inputs()
	in.reports, in.nodes = append(in.reports, joined.reports...), append(in.nodes, joined.nodes...)
	in.up["c"] = true
	second := decide(in) // it writes status.nodes, which now lists c
	if got, want := standbysOf(second), map[string]string{ip100: "b", ip101: "a"}; !maps.Equal(got, want) {
		t.Errorf("an idle node joined: standbys %v, want them unchanged, %v", got, want)
	}
	apply(&in, second)

	in.up["a"] = false
	noteLapsed(in.lapsed, in.reports, in.up)
	third := decide(in)
	if got := seenOf(third, in.now).gateways["gw"].floatingIPs; got[ip100] != "b" {
		t.Errorf("a failed: %s is on %q, want its standby b (placement %v)", ip100, got[ip100], got)
	}
	if got, want := standbysOf(third), map[string]string{ip100: "c", ip101: "c"}; !maps.Equal(got, want) {
		t.Errorf("standbys after a failed %v, want %v", got, want)
	}
}

// TestDecideCordonGoesToTheStandby: a cordoned holder's IP goes to its standby, the node
// its connections were copied to. While the old node lets go, the status names that
// target as the standby (where the IP goes next, and where the old node hands its
// connections), so the pass after the let-go grants it there and nowhere else.
func TestDecideCordonGoesToTheStandby(t *testing.T) {
	in := cluster{nodes: []tnode{{name: "a"}, {name: "b"}, {name: "c"}},
		gateways: []tgateway{{name: "gw", ips: []string{ip100}}}}.inputs()
	status := func(d decision) v1.NetworkGatewayGroupStatus {
		for _, w := range d.gateways {
			return w.status
		}
		return in.groups[0].Status
	}
	d := decide(in)
	apply(&in, d)
	holder, standby := status(d).FloatingIPs[ip100], status(d).Standbys[ip100]
	if holder == "" || standby == "" || holder == standby {
		t.Fatalf("placed on %q with standby %q", holder, standby)
	}
	for i := range in.nodes {
		if in.nodes[i].Name == holder {
			in.nodes[i].Spec.Unschedulable = true
		}
	}
	waiting := decide(in)
	apply(&in, waiting)
	if got := status(waiting); got.FloatingIPs[ip100] != holder || got.Standbys[ip100] != standby {
		t.Errorf("while %s lets go: placed %v, standbys %v; want %s on %s with standby %s", holder, got.FloatingIPs, got.Standbys, ip100, holder, standby)
	}
	for i := range in.reports { // the old node lets go
		if r := &in.reports[i]; r.Name == holder {
			r.Status.FloatingIPs = nil
		}
	}
	moved := decide(in)
	if got := status(moved).FloatingIPs[ip100]; got != standby {
		t.Errorf("after %s let go, %s went to %q, want its standby %s", holder, ip100, got, standby)
	}
}
