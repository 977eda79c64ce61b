package view

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	apiequality "k8s.io/apimachinery/pkg/api/equality"

	"github.com/egressgw/egressgw/apiserver/apis/egress/v1alpha1"
	"github.com/egressgw/egressgw/apiserver/apis/networking"
	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/apiserver/routing"
)

// derived is what the Store computes from its inputs and keeps between changes. Each
// field is replaced whole, never changed in place, so a reader that took it under the
// lock may keep using it after.
type derived struct {
	compiled *routing.Policies
	byName   map[string]*routing.Policy
	rank     map[string]int
	// entries are the policies laid out for views.
	entries map[string]v1alpha1.SelectingPolicy
	cluster []netip.Prefix

	gateways *routing.Gateways
	heldBy   map[string][]string               // floating IP → nodes whose agent reports it
	byIP     map[netip.Addr]*podEntry          // pods by IPv4, host-network and finished pods left out
	selected map[string]map[*podEntry]struct{} // policy → the pods it selects
}

func newDerived() derived {
	return derived{
		compiled: routing.Compile(nil, nil), byName: map[string]*routing.Policy{}, rank: map[string]int{},
		entries:  map[string]v1alpha1.SelectingPolicy{},
		gateways: routing.NewGateways(nil),
		heldBy:   map[string][]string{}, byIP: map[netip.Addr]*podEntry{}, selected: map[string]map[*podEntry]struct{}{},
	}
}

// change says what an input change may have affected.
type change struct {
	// all: every view; cluster: the in-cluster prefixes too.
	all, cluster bool
	// recompile: policies or gateways changed; heldBy: node reports changed.
	recompile, heldBy bool
	// reselectAll and reselect: which policies select the pods must be decided again.
	reselectAll bool
	reselect    map[*podEntry]struct{}
	// resort: the pods' policies must be put back in precedence order.
	resort map[*podEntry]struct{}
	// pods: views to compute again.
	pods map[*podEntry]struct{}
}

// apply brings the derived state and the views up to date after an input change, and
// tells watchers about every view that changed.
func (s *Store) apply(ch change, inputRV uint64) {
	if !s.synced {
		s.rv = max(s.rv, inputRV)
		return
	}
	if ch.pods == nil {
		ch.pods = map[*podEntry]struct{}{}
	}
	if ch.cluster {
		s.d.cluster = s.in.cluster()
	}
	if ch.recompile || ch.heldBy {
		before := s.d.entries
		if ch.recompile {
			s.d.recompile(&s.in)
		}
		if ch.heldBy {
			s.d.heldBy = s.in.heldBy()
		}
		s.d.entries = s.d.layOut(&s.in)
		for name, e := range s.d.entries {
			if old, ok := before[name]; !ok || !sameEntry(old, e) {
				for pod := range s.d.selected[name] {
					ch.pods[pod] = struct{}{}
				}
			}
		}
	}
	if ch.reselectAll {
		for _, ns := range s.in.pods {
			for _, e := range ns {
				s.reselect(e)
			}
		}
	}
	for e := range ch.reselect {
		s.reselect(e)
		ch.pods[e] = struct{}{}
	}
	for e := range ch.resort {
		slices.SortFunc(e.selected, func(a, b string) int { return s.d.rank[a] - s.d.rank[b] })
	}
	var events []event
	rebuild := func(e *podEntry) {
		next := s.build(e)
		if e.view != nil {
			next.ResourceVersion = e.view.ResourceVersion
			if apiequality.Semantic.DeepEqual(e.view, next) {
				return
			}
		}
		typ := modified
		if e.view == nil {
			typ = added
		}
		events = append(events, event{typ: typ, obj: next, prev: e.view})
		e.view = next
	}
	if ch.all {
		for _, ns := range s.in.pods {
			for _, e := range ns {
				rebuild(e)
			}
		}
	} else {
		for e := range ch.pods {
			rebuild(e)
		}
	}
	if len(events) == 0 {
		s.rv = max(s.rv, inputRV)
		return
	}
	// One change, one order: by namespace and name.
	slices.SortFunc(events, func(a, b event) int {
		return cmp.Or(strings.Compare(a.obj.Namespace, b.obj.Namespace), strings.Compare(a.obj.Name, b.obj.Name))
	})
	rv := s.nextRV(inputRV)
	for i := range events {
		events[i].rv = rv
		events[i].obj.ResourceVersion = strconv.FormatUint(rv, 10)
	}
	s.events.send(events)
}

// policyChanged updates which pods select policy p (already stored, or deleted) and says
// which views that affects: the pods it selected before and those it selects now.
func (s *Store) policyChanged(p *v1.EgressNATPolicy) change {
	ch := change{recompile: true, pods: map[*podEntry]struct{}{}, resort: map[*podEntry]struct{}{}}
	if !s.synced {
		return ch
	}
	var compiled *routing.Policy
	if cur := s.in.policies[p.Name]; cur != nil {
		compiled = routing.Compile([]*v1.EgressNATPolicy{cur}, s.d.resolve).Items()[0]
	}
	was := s.d.selected[p.Name]
	now := map[*podEntry]struct{}{}
	for _, ns := range s.in.pods {
		for _, e := range ns {
			if compiled != nil && compiled.Selects(routing.PodOf(e.pod), s.in.namespaces[e.pod.Namespace]) {
				now[e] = struct{}{}
			}
		}
	}
	for e := range was {
		ch.pods[e] = struct{}{}
		if _, still := now[e]; !still {
			e.selected = slices.DeleteFunc(e.selected, func(n string) bool { return n == p.Name })
		}
	}
	for e := range now {
		ch.pods[e] = struct{}{}
		if _, before := was[e]; !before {
			e.selected = append(e.selected, p.Name)
			ch.resort[e] = struct{}{}
		}
	}
	if len(now) > 0 {
		s.d.selected[p.Name] = now
	} else {
		delete(s.d.selected, p.Name)
	}
	return ch
}

// reselect decides again which policies select the pod.
func (s *Store) reselect(e *podEntry) {
	s.d.unselect(e)
	e.selected = e.selected[:0]
	for _, p := range s.d.compiled.Selecting(routing.PodOf(e.pod), s.in.namespaces[e.pod.Namespace]) {
		e.selected = append(e.selected, p.Name)
		if s.d.selected[p.Name] == nil {
			s.d.selected[p.Name] = map[*podEntry]struct{}{}
		}
		s.d.selected[p.Name][e] = struct{}{}
	}
}

func (d *derived) unselect(e *podEntry) {
	for _, name := range e.selected {
		delete(d.selected[name], e)
		if len(d.selected[name]) == 0 {
			delete(d.selected, name)
		}
	}
}

func (d *derived) indexIP(e *podEntry) {
	if e.ip.IsValid() && !e.pod.Spec.HostNetwork && !routing.Finished(e.pod) {
		d.byIP[e.ip] = e
	}
}

func (d *derived) unindexIP(e *podEntry) {
	if e.ip.IsValid() && d.byIP[e.ip] == e {
		delete(d.byIP, e.ip)
	}
}

// recompile compiles every policy with the gateways as they are now: the same resolution
// the controller writes into policy status (the first floating IP of the named
// NetworkGatewayGroup, held by the node its status places it on).
func (d *derived) recompile(in *inputs) {
	gateways := make([]routing.Gateway, 0, len(in.gateways))
	for _, g := range in.gateways {
		gateways = append(gateways, g)
	}
	d.gateways = routing.NewGateways(gateways)
	objs := make([]*v1.EgressNATPolicy, 0, len(in.policies))
	for _, p := range in.policies {
		objs = append(objs, p)
	}
	d.compiled = routing.Compile(objs, d.resolve)
	d.byName, d.rank = make(map[string]*routing.Policy, len(objs)), make(map[string]int, len(objs))
	for i, p := range d.compiled.Items() {
		d.byName[p.Name], d.rank[p.Name] = p, i
	}
}

func (d *derived) resolve(p *v1.EgressNATPolicy) routing.Resolution {
	return routing.Resolve(&p.Spec, d.gateways, nil)
}

// layOut turns every compiled policy into the form views show.
func (d *derived) layOut(in *inputs) map[string]v1alpha1.SelectingPolicy {
	out := make(map[string]v1alpha1.SelectingPolicy, len(d.byName))
	for name, p := range d.byName {
		obj := in.policies[name]
		r := p.Resolution
		e := v1alpha1.SelectingPolicy{
			Name: name, EgressIP: r.EgressIP, GatewayNode: r.Node, HeldBy: d.heldBy[r.EgressIP],
			Verdict: v1alpha1.VerdictSNAT, Reason: r.Reason, Message: r.Message,
		}
		if !r.Ready() {
			e.Verdict = v1alpha1.VerdictDrop
		}
		if p.Invalid != "" {
			e.Message = "selects no pod: " + p.Invalid
		}
		for _, dest := range obj.Spec.Destinations {
			e.Destinations = append(e.Destinations, strings.TrimSpace(dest.CIDR))
		}
		switch ref := obj.Spec.GatewayRef; {
		case ref != nil:
			e.Gateway = &v1alpha1.ObjectReference{Kind: networking.KindNetworkGatewayGroup, Namespace: ref.Namespace, Name: ref.Name}
		case r.EgressIP != "":
			if g, ok := d.gateways.Owner(r.EgressIP); ok {
				e.Gateway = &v1alpha1.ObjectReference{Kind: g.Kind, Namespace: g.Namespace, Name: g.Name}
			}
		}
		out[name] = e
	}
	return out
}

// sameEntry compares two laid-out policies, field by field: it runs for every policy on
// every gateway change, where reflection would cost more than the rest of the change.
func sameEntry(a, b v1alpha1.SelectingPolicy) bool {
	sameRef := a.Gateway == b.Gateway || (a.Gateway != nil && b.Gateway != nil && *a.Gateway == *b.Gateway)
	return sameRef && a.Name == b.Name && a.EgressIP == b.EgressIP && a.GatewayNode == b.GatewayNode &&
		a.Verdict == b.Verdict && a.Reason == b.Reason && a.Message == b.Message &&
		slices.Equal(a.Destinations, b.Destinations) && slices.Equal(a.HeldBy, b.HeldBy)
}

// cluster is the never-steered set, as the node agents have it: a report counts only
// while its Node exists.
func (in *inputs) cluster() []netip.Prefix {
	c := routing.ClusterAddresses{Configured: in.clusterCIDRs}
	for name, n := range in.nodes {
		a := n.addrs
		a.Interfaces = in.reach[name].Subnets
		c.Nodes = append(c.Nodes, a)
	}
	return c.NeverSteered()
}

func (in *inputs) heldBy() map[string][]string {
	out := map[string][]string{}
	for node, ips := range in.reports {
		for _, ip := range ips {
			out[ip] = append(out[ip], node)
		}
	}
	for _, nodes := range out {
		slices.Sort(nodes)
	}
	return out
}
