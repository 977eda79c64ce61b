package controller

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/apiserver/routing"
	"github.com/egressgw/egressgw/controller/placement"
)

// event is one event to record, as data: write records it with Eventf(obj, nil, typ,
// reason, action, "%s", message).
type event struct {
	obj                          runtime.Object
	typ, reason, action, message string
}

// gatewayWrite is a gateway status that changed. Its events are recorded only once the
// status is written: a write that fails is retried by the next pass, which records them
// then, and the events never speak of a status nobody can read.
type gatewayWrite struct {
	id placement.GatewayID
	// obj is the cache's own object: the patch is computed from it, and locked to its
	// resourceVersion. Never changed.
	obj    client.Object
	status v1.NetworkGatewayGroupStatus
	events []event
}

// policyWrite is a policy status that changed, with the events its write records.
type policyWrite struct {
	obj    *v1.EgressNATPolicy // the cache's own: never changed
	status v1.EgressNATPolicyStatus
	events []event
}

// gatewayStatus is the spec's status shape (status.nodes, status.floatingIPs), the standbys, and a Ready
// condition, and the events for what changed; false if nothing did. A condition that
// changes is stamped now.
func gatewayStatus(g gatewayObject, view placement.View, result placement.Result, now time.Time) (gatewayWrite, bool) {
	// g.obj is the cache's own object: read it, never change it.
	old := g.status
	status := v1.NetworkGatewayGroupStatus{Conditions: slices.Clone(old.Conditions)}
	for node, state := range view.Nodes {
		if status.Nodes == nil {
			status.Nodes = map[string]v1.NodeState{}
		}
		status.Nodes[node] = v1.NodeState(state)
	}
	for ip, node := range view.FloatingIPs {
		if status.FloatingIPs == nil {
			status.FloatingIPs = map[string]string{}
		}
		status.FloatingIPs[ip.String()] = node
	}
	for ip, node := range view.Standbys {
		if status.Standbys == nil {
			status.Standbys = map[string]string{}
		}
		status.Standbys[ip.String()] = node
	}
	cond := metav1.Condition{Type: v1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Placed",
		Message: "every floating IP is held by a node", ObservedGeneration: g.obj.GetGeneration(),
		LastTransitionTime: metav1.NewTime(now)}
	if len(view.Unplaced) > 0 {
		ips := slices.SortedFunc(maps.Keys(view.Unplaced), netip.Addr.Compare)
		var reasons []string
		for _, ip := range ips {
			reasons = append(reasons, ip.String()+": "+view.Unplaced[ip])
		}
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "Unplaced", strings.Join(reasons, "; ")
	}
	meta.SetStatusCondition(&status.Conditions, cond)
	if maps.Equal(old.Nodes, status.Nodes) && maps.Equal(old.FloatingIPs, status.FloatingIPs) && maps.Equal(old.Standbys, status.Standbys) &&
		conditionsEqual(old.Conditions, status.Conditions) {
		return gatewayWrite{}, false
	}

	w := gatewayWrite{id: g.id, obj: g.obj, status: status}
	if prev := meta.FindStatusCondition(old.Conditions, v1.ConditionReady); cond.Status == metav1.ConditionFalse && (prev == nil || prev.Message != cond.Message) {
		w.events = append(w.events, event{g.obj, corev1.EventTypeWarning, "NoNodeForFloatingIP", "Place", cond.Message})
	}
	w.events = append(w.events, moveEvents(g, result.Moves)...)
	for _, c := range result.Conflicts {
		if c.Loser == g.id {
			w.events = append(w.events, event{g.obj, corev1.EventTypeWarning, "FloatingIPConflict", "Place",
				fmt.Sprintf("%s is already used by %s, which is older and keeps it; remove it from this gateway", c.IP, c.Winner)})
		}
	}
	return w, true
}

// moveEvents are one event per kind of move of this gateway's IPs: the events API folds
// events with one reason into a series showing only the last note, so one event per IP
// would hide all but one of them.
func moveEvents(g gatewayObject, moves []placement.Move) []event {
	type key struct {
		from, to string
		reason   placement.MoveReason
	}
	var order []key
	ips := map[key][]string{}
	for _, m := range moves {
		ip := m.IP.String()
		if g.status.FloatingIPs[ip] == "" || !slices.Contains(g.spec.FloatingIPs, ip) {
			continue
		}
		k := key{m.From, m.To, m.Reason}
		if _, ok := ips[k]; !ok {
			order = append(order, k)
		}
		ips[k] = append(ips[k], ip)
	}
	var out []event
	for _, k := range order {
		list := strings.Join(ips[k], ", ")
		if k.to == "" {
			out = append(out, event{g.obj, corev1.EventTypeWarning, "FloatingIPUnassigned", "Place",
				fmt.Sprintf("%s left node %s (%s) and no node can take it", list, k.from, k.reason)})
			continue
		}
		out = append(out, event{g.obj, corev1.EventTypeNormal, "FloatingIPMoved", "Place",
			fmt.Sprintf("%s moved from node %s to node %s (%s)", list, k.from, k.to, k.reason)})
	}
	return out
}

// policyStatus is the resolved egress IP and gateway node, and the spec's events when
// they change; false if nothing did. A condition that changes is stamped now.
func policyStatus(p *v1.EgressNATPolicy, res routing.Resolution, now time.Time) (policyWrite, bool) {
	// p is the cache's own object: read it, never change it.
	status := v1.EgressNATPolicyStatus{EgressIP: res.EgressIP, GatewayNode: res.Node, Conditions: slices.Clone(p.Status.Conditions)}
	cond := metav1.Condition{Type: v1.ConditionReady, Status: metav1.ConditionFalse, Reason: res.Reason,
		Message: res.Message, ObservedGeneration: p.Generation, LastTransitionTime: metav1.NewTime(now)}
	if res.Ready() {
		cond.Status = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&status.Conditions, cond)
	if p.Status.EgressIP == status.EgressIP && p.Status.GatewayNode == status.GatewayNode && conditionsEqual(p.Status.Conditions, status.Conditions) {
		return policyWrite{}, false
	}
	w := policyWrite{obj: p, status: status}
	prev := meta.FindStatusCondition(p.Status.Conditions, v1.ConditionReady)
	switch {
	case !res.Ready() && (prev == nil || prev.Reason != res.Reason || prev.Message != res.Message):
		w.events = append(w.events, event{p, corev1.EventTypeWarning, res.Reason, "Resolve", res.Message})
	case res.Ready() && p.Status.GatewayNode != "" && p.Status.GatewayNode != res.Node && p.Status.EgressIP == res.EgressIP:
		w.events = append(w.events, event{p, corev1.EventTypeNormal, "EgressIPMoved", "Resolve",
			fmt.Sprintf("egress IP %s moved from node %s to node %s", res.EgressIP, p.Status.GatewayNode, res.Node)})
	}
	return w, true
}

// conditionsEqual compares conditions field by field: a reflective comparison of every
// gateway's and policy's status is most of a resync's cost.
func conditionsEqual(a, b []metav1.Condition) bool {
	return slices.EqualFunc(a, b, func(x, y metav1.Condition) bool {
		return x.Type == y.Type && x.Status == y.Status && x.Reason == y.Reason && x.Message == y.Message &&
			x.ObservedGeneration == y.ObservedGeneration && x.LastTransitionTime.Equal(&y.LastTransitionTime)
	})
}
