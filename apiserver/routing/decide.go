package routing

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
)

// Verdict is what happens to a packet that leaves a pod.
type Verdict int

const (
	// Masquerade: no policy applies; the source node masquerades to its own IP, as before.
	Masquerade Verdict = iota
	// InCluster: the destination is inside the cluster and is never steered.
	InCluster
	// SNAT: steered to the gateway node and SNATed to the policy's egress IP.
	SNAT
	// Drop: a policy applies but its traffic cannot leave with its egress IP, so it does
	// not leave at all.
	Drop
)

func (v Verdict) String() string {
	switch v {
	case Masquerade:
		return "Masquerade"
	case InCluster:
		return "InCluster"
	case SNAT:
		return "SNAT"
	case Drop:
		return "Drop"
	}
	return fmt.Sprintf("Verdict(%d)", int(v))
}

// Route is one entry of the destination table of a set of policies: what the dataplane's
// longest-prefix-match map holds for the pods those policies select.
type Route struct {
	Prefix netip.Prefix
	// Verdict is InCluster, SNAT or Drop.
	Verdict Verdict
	// Policy is the policy the route steers for; nil for an in-cluster route.
	Policy *Policy
}

// Routes builds the destination table of the pods that the policies select (given in
// precedence order). The rule for overlaps:
//   - an in-cluster prefix always wins over any policy prefix it contains or equals, so
//     in-cluster traffic is never steered;
//   - otherwise the longest prefix that contains the destination wins (the lookup's job);
//   - on an equal prefix, the policy that comes first in precedence order wins.
//
// A policy that is not ready gets Drop routes: its traffic must not leave with any other
// source IP. The result is sorted by prefix.
func Routes(selected []*Policy, cluster []netip.Prefix) []Route {
	seen := make(map[netip.Prefix]bool)
	var routes []Route
	for _, c := range cluster {
		c = c.Masked()
		if !seen[c] {
			seen[c] = true
			routes = append(routes, Route{Prefix: c, Verdict: InCluster})
		}
	}
	for _, p := range selected {
		verdict := SNAT
		if !p.Resolution.Ready() {
			verdict = Drop
		}
		for _, d := range p.Destinations {
			if seen[d] || insideAny(d, cluster) {
				continue
			}
			seen[d] = true
			routes = append(routes, Route{Prefix: d, Verdict: verdict, Policy: p})
		}
	}
	slices.SortFunc(routes, func(a, b Route) int {
		return cmp.Or(a.Prefix.Addr().Compare(b.Prefix.Addr()), cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()))
	})
	return routes
}

// UnknownPodRoutes is the table for a pod the node does not know yet: every destination
// of every policy is dropped, because the pod might be selected. Fail closed.
func UnknownPodRoutes(ps *Policies, cluster []netip.Prefix) []Route {
	routes := Routes(ps.items, cluster)
	for i := range routes {
		if routes[i].Verdict == SNAT {
			routes[i].Verdict = Drop
		}
	}
	return routes
}

func insideAny(p netip.Prefix, cluster []netip.Prefix) bool {
	for _, c := range cluster {
		if c.Bits() <= p.Bits() && c.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

// Lookup finds the longest prefix that contains dst, as the kernel's LPM trie does, in
// a list of Routes or of TableRoutes.
func Lookup[R interface{ route() Route }](routes []R, dst netip.Addr) (R, bool) {
	var best R
	found := false
	for _, r := range routes {
		if p := r.route().Prefix; p.Contains(dst) && (!found || p.Bits() > best.route().Prefix.Bits()) {
			best, found = r, true
		}
	}
	return best, found
}

func (r Route) route() Route { return r }

// Decision is what happens to one packet from a pod to a destination.
type Decision struct {
	Verdict     Verdict
	Policy      *Policy
	EgressIP    netip.Addr
	GatewayNode string
	// Path is how the pod's node sends the packet to the gateway node (SNAT), or why it
	// cannot (NoPath, a Drop).
	Path Path
	// Overlaps are the other selecting policies whose destinations also contain the
	// destination, and lost to Policy by the overlap rule.
	Overlaps []*Policy
	// Reason is one sentence a person can act on.
	Reason string
}

// Decide says what happens to a packet from pod to dst, with the same tables the node
// agent programs into the dataplane.
func (ps *Policies) Decide(pod Pod, namespaceLabels map[string]string, cluster []netip.Prefix, dst netip.Addr) Decision {
	switch {
	case pod.HostNetwork:
		return Decision{Verdict: Masquerade, Reason: "the pod uses the host network, so its traffic is the node's own and no egress policy applies"}
	case !dst.Is4():
		return Decision{Verdict: Masquerade, Reason: "only IPv4 traffic is steered; other traffic leaves as before"}
	}
	selected := ps.Selecting(pod, namespaceLabels)
	route, found := Lookup(Routes(selected, cluster), dst)
	if !found {
		if len(selected) == 0 {
			return Decision{Verdict: Masquerade, Reason: fmt.Sprintf("no EgressNATPolicy selects the pod; node %s masquerades to its own IP", pod.Node)}
		}
		return Decision{Verdict: Masquerade, Reason: fmt.Sprintf("no destination of the policies that select the pod contains %s; node %s masquerades to its own IP", dst, pod.Node)}
	}
	if route.Verdict == InCluster {
		return Decision{Verdict: InCluster, Reason: fmt.Sprintf("%s is inside the cluster (%s) and is never steered", dst, route.Prefix)}
	}
	d := Decision{Verdict: route.Verdict, Policy: route.Policy}
	for _, p := range selected {
		if p != route.Policy && ContainsAny(p.Destinations, dst) {
			d.Overlaps = append(d.Overlaps, p)
		}
	}
	r := route.Policy.Resolution
	if route.Verdict == Drop {
		d.Reason = fmt.Sprintf("EgressNATPolicy %s selects the pod for %s, but its traffic is dropped: %s", route.Policy.Name, route.Prefix, r.Message)
		return d
	}
	d.EgressIP, _ = netip.ParseAddr(r.EgressIP)
	if pod.Redirected {
		d.Verdict, d.Path = Drop, NoPath
		d.Reason = fmt.Sprintf("EgressNATPolicy %s selects the pod for %s, but its traffic is dropped: %s", route.Policy.Name, route.Prefix, Redirected(pod.Node))
		return d
	}
	if d.Path = pod.NodeReach.PathTo(d.EgressIP); d.Path == NoPath {
		d.Verdict = Drop
		d.Reason = fmt.Sprintf("EgressNATPolicy %s selects the pod for %s, but its traffic is dropped: %s", route.Policy.Name, route.Prefix,
			NoRoute(pod.Node, pod.NodeReach.Subnets, d.EgressIP))
		return d
	}
	d.GatewayNode = r.Node
	d.Reason = fmt.Sprintf("EgressNATPolicy %s selects the pod for %s; node %s SNATs to %s", route.Policy.Name, route.Prefix, r.Node, r.EgressIP)
	if d.Path == RoutedPath {
		d.Reason += fmt.Sprintf(", which node %s reaches through routers, wrapped in IPv4 (%d bytes more per packet)", pod.Node, RoutedOverhead)
	}
	return d
}

// ContainsAny says whether one of prefixes contains a.
func ContainsAny(prefixes []netip.Prefix, a netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
