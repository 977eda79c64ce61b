package controller

import (
	"context"
	"fmt"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/apiserver/apis/networking/v1alpha1"
	"github.com/egressgw/egressgw/apiserver/heartbeat"
	"github.com/egressgw/egressgw/controller/liveness"
)

// inputs is everything a pass decides from, read once: decide looks at nothing else.
// The lists hold the cache's own objects, not copies: decide and write read them and
// never change them (writes copy first).
type inputs struct {
	groups   []v1.NetworkGatewayGroup
	legacy   []v1alpha1.AnthosNetworkGateway
	reports  []v1.NetworkGatewayNode
	nodes    []corev1.Node
	policies []v1.EgressNATPolicy
	// up are the nodes Up at now, one reading of the tracker for the whole pass.
	up map[string]bool
	// lapsed are the nodes whose reports are void (Reconciler.lapsed); read only.
	lapsed map[string]bool
	// now is when liveness was read; nextDown is when the first Up node turns Down if
	// nothing is renewed, zero if no node is Up.
	now, nextDown time.Time
}

// gather reads the caches (or the API server, while the caches are behind), feeds the
// heartbeat Leases to the liveness tracker, and reads liveness once for the pass.
func (r *Reconciler) gather(ctx context.Context) (inputs, error) {
	var (
		in       inputs
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
		return in, fmt.Errorf("reading the caches: %w", err)
	}
	if r.fresh != nil {
		if err := r.fresh.readLive(ctx, r.live); err != nil {
			return in, err
		}
		// A cache behind (its informers reconnecting after an API server restart, say)
		// is not waited for: this pass reads everything from the API server instead.
		if what, stale := r.fresh.behind(cacheLookup(r.fresh, reports.Items, groups.Items, legacy.Items, policies.Items)); stale {
			klog.V(2).InfoS("The cache is behind; this pass reads the API server", "behind", what)
			staleCachePasses.Inc()
			if err := read(r.live); err != nil {
				return in, fmt.Errorf("reading the API server, as the cache is behind: %w", err)
			}
		}
	}
	if r.answers != nil {
		gens := make(map[string]int64, len(reports.Items))
		keys := make(map[string][]string, len(reports.Items))
		for i := range reports.Items {
			gens[reports.Items[i].Name] = reports.Items[i].Generation
			keys[reports.Items[i].Name] = reports.Items[i].Status.HeartbeatKeys
		}
		r.answers.passStarted(gens, keys)
	}
	observeLeases(r.tracker, leases.Items, r.leaseSet)
	r.leaseSet = map[string]bool{}
	for _, l := range leases.Items {
		if node, ok := strings.CutPrefix(l.Name, LeasePrefix); ok {
			r.leaseSet[node] = true
		}
	}
	if err := r.confirmDown(ctx, leases.Items); err != nil {
		return in, err
	}

	in.groups, in.legacy, in.reports, in.nodes, in.policies = groups.Items, legacy.Items, reports.Items, nodes.Items, policies.Items
	in.now = time.Now()
	in.up = make(map[string]bool, len(reports.Items))
	for i := range reports.Items {
		if name := reports.Items[i].Name; r.tracker.Up(name) {
			in.up[name] = true
		}
	}
	if next, ok := r.tracker.NextDown(); ok {
		in.nextDown = in.now.Add(next)
	}
	if r.lapsed == nil {
		r.lapsed = map[string]bool{}
	}
	noteLapsed(r.lapsed, reports.Items, in.up)
	in.lapsed = r.lapsed
	return in, nil
}

// noteLapsed updates the nodes whose reports are void. A node back from Down holds
// nothing but what it is granted now: its old report and the status showing IPs on it
// speak of grants that have lapsed. Once its report has caught up with its spec, the
// report is current again.
func noteLapsed(lapsed map[string]bool, reports []v1.NetworkGatewayNode, up map[string]bool) {
	for i := range reports {
		obj := &reports[i]
		switch {
		case !up[obj.Name]:
			lapsed[obj.Name] = true
		case obj.Status.ObservedGeneration >= obj.Generation:
			delete(lapsed, obj.Name)
		}
	}
}

// observeLeases feeds the heartbeat Leases to the liveness tracker.
func observeLeases(tracker *liveness.Tracker, leases []coordinationv1.Lease, known map[string]bool) {
	seen := map[string]bool{}
	for _, l := range leases {
		node, ok := strings.CutPrefix(l.Name, LeasePrefix)
		if !ok {
			continue
		}
		seen[node] = true
		tracker.Observe(node, l.ResourceVersion, heartbeat.LeaseDuration(&l))
	}
	for node := range known {
		if !seen[node] {
			tracker.Forget(node)
		}
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
