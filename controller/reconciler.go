package controller

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/egressgw/egressgw/apiserver/apis/networking"
	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/apiserver/apis/networking/v1alpha1"
	"github.com/egressgw/egressgw/apiserver/routing"
	"github.com/egressgw/egressgw/controller/liveness"
	"github.com/egressgw/egressgw/controller/placement"
)

// Reconciler recomputes the whole placement on every change: placement is global (an IP
// on one node changes where the next one goes), and a full pass takes milliseconds.
type Reconciler struct {
	client   client.Client
	events   events.EventRecorder
	tracker  *liveness.Tracker
	leaseSet map[string]bool // nodes with a Lease at the last pass
	// lapsed are nodes a pass saw Down whose agent has not yet reported on the grants
	// written since: their agent dropped every IP when its own grant lapsed, so what
	// their old report says they hold is void.
	lapsed map[string]bool
	// leading gates the passes: only the leader places. Nil means always.
	leading func() bool
	// answers learns of every pass and of every grant written; nil without heartbeats.
	answers *answerer
	// fresh holds passes back while the cache is behind; live reads the API server.
	fresh *freshness
	live  client.Reader
	// upBefore are the nodes the last pass saw Up: one that turns Down has its Lease
	// read from the API server first (confirmDown).
	upBefore map[string]bool
}

var _ reconcile.Reconciler = &Reconciler{}

// Reconcile reads everything from the informer caches, decides, and writes status.
func (r *Reconciler) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	if r.leading != nil && !r.leading() {
		return reconcile.Result{}, nil
	}
	start := time.Now()
	var (
		groups   v1.NetworkGatewayGroupList
		legacy   v1alpha1.AnthosNetworkGatewayList
		reports  v1.NetworkGatewayNodeList
		nodes    corev1.NodeList
		leases   coordinationv1.LeaseList
		policies v1.EgressNATPolicyList
	)
	lists := []struct {
		list client.ObjectList
		opts []client.ListOption
	}{
		{&groups, nil}, {&legacy, nil}, {&nodes, nil}, {&policies, nil},
		{&reports, []client.ListOption{client.InNamespace(NodeReportNamespace)}},
		{&leases, []client.ListOption{client.InNamespace(LeaseNamespace)}},
	}
	read := func(reader client.Reader, extra ...client.ListOption) error {
		for _, l := range lists {
			if err := reader.List(ctx, l.list, append(l.opts, extra...)...); err != nil {
				return err
			}
		}
		return nil
	}
	// The cache's own objects, not copies: nothing here changes them (writes copy first),
	// and copying 10,000 policies every pass would cost more than deciding.
	if err := read(r.client, client.UnsafeDisableDeepCopy); err != nil {
		return reconcile.Result{}, fmt.Errorf("reading the caches: %w", err)
	}
	if r.fresh != nil {
		if err := r.fresh.readLive(ctx, r.live); err != nil {
			return reconcile.Result{}, err
		}
		// A cache behind (its informers reconnecting after an API server restart, say)
		// is not waited for: this pass reads everything from the API server instead.
		if what, stale := r.fresh.behind(cacheLookup(r.fresh, reports.Items, groups.Items, legacy.Items, policies.Items)); stale {
			klog.V(2).InfoS("The cache is behind; this pass reads the API server", "behind", what)
			staleCachePasses.Inc()
			if err := read(r.live); err != nil {
				return reconcile.Result{}, fmt.Errorf("reading the API server, as the cache is behind: %w", err)
			}
		}
	}
	if r.answers != nil {
		gens := make(map[string]int64, len(reports.Items))
		for i := range reports.Items {
			gens[reports.Items[i].Name] = reports.Items[i].Generation
		}
		r.answers.passStarted(gens)
	}
	observeLeases(r.tracker, leases.Items, r.leaseSet)
	r.leaseSet = map[string]bool{}
	for _, l := range leases.Items {
		if node, ok := strings.CutPrefix(l.Name, LeasePrefix); ok {
			r.leaseSet[node] = true
		}
	}

	if err := r.confirmDown(ctx, leases.Items); err != nil {
		return reconcile.Result{}, err
	}

	gateways := collectGateways(groups.Items, legacy.Items)
	in := placementInput(gateways, placementNodes(reports.Items, nodes.Items, r.tracker))
	placed := placement.Place(in)
	grantees := r.grantNodes(reports.Items, in.Current)
	plan := planGrants(placed.Assignment, grantees)
	var errs []error
	if err := r.writeGrants(ctx, grantees, plan); err != nil {
		errs = append(errs, err)
	}
	// Status and policies show where the IPs are once the grants are written: an IP
	// waiting for its old node to let go is still on the old node.
	result := effectiveResult(placed, plan)
	views := placement.Views(in, result)

	for _, g := range gateways {
		if err := r.writeGatewayStatus(ctx, g, views[g.id], result); err != nil {
			errs = append(errs, err)
		}
	}
	holders := func(ip string) (string, bool) {
		addr, err := netip.ParseAddr(ip)
		if err != nil {
			return "", false
		}
		node, ok := result.Assignment[addr]
		return node, ok
	}
	lookup := routing.NewGateways(routingGateways(groups.Items, legacy.Items))
	for i := range policies.Items {
		if err := r.writePolicyStatus(ctx, &policies.Items[i], routing.Resolve(&policies.Items[i].Spec, lookup, holders)); err != nil {
			errs = append(errs, err)
		}
	}
	reconcileSeconds.Observe(time.Since(start).Seconds())
	klog.V(3).InfoS("Placement pass", "took", time.Since(start), "waiting", plan.waiting, "errors", len(errs))
	if len(errs) > 0 {
		return reconcile.Result{}, fmt.Errorf("writing status: %w", errs[0])
	}
	if r.answers != nil {
		r.answers.passCompleted()
	}
	now := time.Now()
	for _, m := range result.Moves {
		recordMove(m)
		if down, ok := r.tracker.DownAt(m.From); ok && m.Reason == placement.MoveNodeDown && m.To != "" {
			failoverSeconds.Observe(now.Sub(down).Seconds())
		}
	}
	// Come back when the first Up node would turn Down if it stopped renewing, and within
	// a second while a handover waits (the old node's status update normally brings the
	// next pass sooner).
	var res reconcile.Result
	if next, ok := r.tracker.NextDown(); ok {
		res.RequeueAfter = next + 10*time.Millisecond
	}
	if plan.waiting > 0 && (res.RequeueAfter == 0 || res.RequeueAfter > time.Second) {
		res.RequeueAfter = time.Second
	}
	return res, nil
}

// routingGateways are the gateways of both kinds as the routing decision reads them.
func routingGateways(groups []v1.NetworkGatewayGroup, legacy []v1alpha1.AnthosNetworkGateway) []routing.Gateway {
	out := make([]routing.Gateway, 0, len(groups)+len(legacy))
	for i := range groups {
		out = append(out, routing.GroupGateway(&groups[i]))
	}
	for i := range legacy {
		out = append(out, routing.LegacyGateway(&legacy[i]))
	}
	return out
}

func collectGateways(groups []v1.NetworkGatewayGroup, legacy []v1alpha1.AnthosNetworkGateway) []gatewayObject {
	var out []gatewayObject
	for i := range groups {
		g := &groups[i]
		out = append(out, gatewayObject{id: placement.GatewayID{Kind: networking.KindNetworkGatewayGroup, Namespace: g.Namespace, Name: g.Name}, obj: g, spec: &g.Spec, status: &g.Status})
	}
	for i := range legacy {
		g := &legacy[i]
		out = append(out, gatewayObject{id: placement.GatewayID{Kind: networking.KindAnthosNetworkGateway, Namespace: g.Namespace, Name: g.Name}, obj: g, spec: &g.Spec, status: &g.Status})
	}
	return out
}

// writeGatewayStatus writes the spec's status shape (status.nodes, status.floatingIPs) and
// a Ready condition, and records events for what changed.
func (r *Reconciler) writeGatewayStatus(ctx context.Context, g gatewayObject, view placement.View, result placement.Result) error {
	// g.obj is the cache's own object: read it, never change it.
	old := g.status
	status := &v1.NetworkGatewayGroupStatus{Conditions: slices.Clone(old.Conditions)}
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
	cond := metav1.Condition{Type: v1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Placed",
		Message: "every floating IP is held by a node", ObservedGeneration: g.obj.GetGeneration()}
	if len(view.Unplaced) > 0 {
		ips := make([]netip.Addr, 0, len(view.Unplaced))
		for ip := range view.Unplaced {
			ips = append(ips, ip)
		}
		slices.SortFunc(ips, netip.Addr.Compare)
		var reasons []string
		for _, ip := range ips {
			reasons = append(reasons, ip.String()+": "+view.Unplaced[ip])
		}
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "Unplaced", strings.Join(reasons, "; ")
	}
	meta.SetStatusCondition(&status.Conditions, cond)
	assigned := len(view.FloatingIPs)
	floatingIPs.WithLabelValues(g.id.String(), "assigned").Set(float64(assigned))
	floatingIPs.WithLabelValues(g.id.String(), "unassigned").Set(float64(len(g.spec.FloatingIPs) - assigned))
	if maps.Equal(old.Nodes, status.Nodes) && maps.Equal(old.FloatingIPs, status.FloatingIPs) && conditionsEqual(old.Conditions, status.Conditions) {
		return nil
	}

	updated := g.obj.DeepCopyObject().(client.Object)
	kind := kindGroup
	switch o := updated.(type) {
	case *v1.NetworkGatewayGroup:
		o.Status = *status
	case *v1alpha1.AnthosNetworkGateway:
		o.Status = *status
		kind = kindLegacy
	}
	// Written from the version read: a write computed from a stale cache fails.
	if err := r.client.Status().Patch(ctx, updated, client.MergeFromWithOptions(g.obj, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("%s: %w", g.id, err)
	}
	if r.fresh != nil {
		r.fresh.wrote(kind, updated)
	}
	if prev := meta.FindStatusCondition(old.Conditions, v1.ConditionReady); cond.Status == metav1.ConditionFalse && (prev == nil || prev.Message != cond.Message) {
		r.events.Eventf(g.obj, nil, corev1.EventTypeWarning, "NoNodeForFloatingIP", "Place", "%s", cond.Message)
	}
	r.recordMoves(g, old, result.Moves)
	for _, c := range result.Conflicts {
		if c.Loser == g.id {
			r.events.Eventf(g.obj, nil, corev1.EventTypeWarning, "FloatingIPConflict", "Place", "%s is already used by %s, which is older and keeps it; remove it from this gateway", c.IP, c.Winner)
		}
	}
	klog.V(2).InfoS("Wrote gateway status", "gateway", g.id.String(), "floatingIPs", status.FloatingIPs)
	return nil
}

// recordMoves records one event per kind of move of this gateway's IPs: the events API
// folds events with one reason into a series showing only the last note, so one event per
// IP would hide all but one of them.
func (r *Reconciler) recordMoves(g gatewayObject, old *v1.NetworkGatewayGroupStatus, moves []placement.Move) {
	type key struct {
		from, to string
		reason   placement.MoveReason
	}
	var order []key
	ips := map[key][]string{}
	for _, m := range moves {
		ip := m.IP.String()
		if old.FloatingIPs[ip] == "" || !slices.Contains(g.spec.FloatingIPs, ip) {
			continue
		}
		k := key{m.From, m.To, m.Reason}
		if _, ok := ips[k]; !ok {
			order = append(order, k)
		}
		ips[k] = append(ips[k], ip)
	}
	for _, k := range order {
		list := strings.Join(ips[k], ", ")
		if k.to == "" {
			r.events.Eventf(g.obj, nil, corev1.EventTypeWarning, "FloatingIPUnassigned", "Place", "%s left node %s (%s) and no node can take it", list, k.from, k.reason)
			continue
		}
		r.events.Eventf(g.obj, nil, corev1.EventTypeNormal, "FloatingIPMoved", "Place", "%s moved from node %s to node %s (%s)", list, k.from, k.to, k.reason)
	}
}

// writePolicyStatus writes the resolved egress IP and gateway node, and records the
// spec's events when they change.
func (r *Reconciler) writePolicyStatus(ctx context.Context, p *v1.EgressNATPolicy, res routing.Resolution) error {
	// p is the cache's own object: read it, never change it.
	status := v1.EgressNATPolicyStatus{EgressIP: res.EgressIP, GatewayNode: res.Node, Conditions: slices.Clone(p.Status.Conditions)}
	cond := metav1.Condition{Type: v1.ConditionReady, Status: metav1.ConditionFalse, Reason: res.Reason,
		Message: res.Message, ObservedGeneration: p.Generation}
	if res.Ready() {
		cond.Status = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&status.Conditions, cond)
	if p.Status.EgressIP == status.EgressIP && p.Status.GatewayNode == status.GatewayNode && conditionsEqual(p.Status.Conditions, status.Conditions) {
		return nil
	}
	updated := p.DeepCopy()
	updated.Status = status
	if err := r.client.Status().Patch(ctx, updated, client.MergeFromWithOptions(p, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("EgressNATPolicy %s: %w", p.Name, err)
	}
	if r.fresh != nil {
		r.fresh.wrote(kindPolicy, updated)
	}
	prev := meta.FindStatusCondition(p.Status.Conditions, v1.ConditionReady)
	switch {
	case !res.Ready() && (prev == nil || prev.Reason != res.Reason || prev.Message != res.Message):
		r.events.Eventf(p, nil, corev1.EventTypeWarning, res.Reason, "Resolve", "%s", res.Message)
	case res.Ready() && p.Status.GatewayNode != "" && p.Status.GatewayNode != res.Node && p.Status.EgressIP == res.EgressIP:
		r.events.Eventf(p, nil, corev1.EventTypeNormal, "EgressIPMoved", "Resolve", "egress IP %s moved from node %s to node %s", res.EgressIP, p.Status.GatewayNode, res.Node)
	}
	return nil
}

// conditionsEqual compares conditions field by field: a reflective comparison of every
// gateway's and policy's status is most of a resync's cost.
func conditionsEqual(a, b []metav1.Condition) bool {
	return slices.EqualFunc(a, b, func(x, y metav1.Condition) bool {
		return x.Type == y.Type && x.Status == y.Status && x.Reason == y.Reason && x.Message == y.Message &&
			x.ObservedGeneration == y.ObservedGeneration && x.LastTransitionTime.Equal(&y.LastTransitionTime)
	})
}

// cacheLookup finds cached objects by freshness key. It indexes the objects on its first
// call, which behind makes only when something is awaited: most passes index nothing.
// The policies are indexed only if one is awaited.
func cacheLookup(f *freshness, reports []v1.NetworkGatewayNode, groups []v1.NetworkGatewayGroup, legacy []v1alpha1.AnthosNetworkGateway, policies []v1.EgressNATPolicy) func(string) (client.Object, bool) {
	var index map[string]client.Object
	return func(k string) (client.Object, bool) {
		if index == nil {
			index = map[string]client.Object{}
			for i := range reports {
				index[objectKey(kindReport, &reports[i])] = &reports[i]
			}
			for i := range groups {
				index[objectKey(kindGroup, &groups[i])] = &groups[i]
			}
			for i := range legacy {
				index[objectKey(kindLegacy, &legacy[i])] = &legacy[i]
			}
			if f.pendingLocked(kindPolicy) {
				for i := range policies {
					index[objectKey(kindPolicy, &policies[i])] = &policies[i]
				}
			}
		}
		o, ok := index[k]
		return o, ok
	}
}

// confirmDown reads, from the API server, the Lease of every node that was Up at the
// last pass and looks Down now: the cache may lag behind a renewal that reached the API
// server in time, and a node must not be declared Down while it holds its grant.
func (r *Reconciler) confirmDown(ctx context.Context, leases []coordinationv1.Lease) error {
	up := map[string]bool{}
	for i := range leases {
		node, ok := strings.CutPrefix(leases[i].Name, LeasePrefix)
		if !ok {
			continue
		}
		if !r.tracker.Up(node) && r.upBefore[node] && r.live != nil {
			var fresh coordinationv1.Lease
			if err := r.live.Get(ctx, client.ObjectKeyFromObject(&leases[i]), &fresh); err != nil {
				return fmt.Errorf("confirming that node %s is Down: %w", node, err)
			}
			if fresh.ResourceVersion != leases[i].ResourceVersion {
				observeLeases(r.tracker, []coordinationv1.Lease{fresh}, nil)
			}
		}
		up[node] = r.tracker.Up(node)
	}
	r.upBefore = up
	return nil
}
