package view

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egressgw/egressgw/apiserver/aggregated/preview"
	"github.com/egressgw/egressgw/apiserver/apis/egress/v1alpha1"
	"github.com/egressgw/egressgw/apiserver/routing"
)

// build computes a pod's view: its policies, and its destination table exactly as
// routing.Routes gives it to the node agent.
func (s *Store) build(e *podEntry) *v1alpha1.PodEgress {
	pod := e.pod
	node := s.in.nodes[pod.Spec.NodeName]
	v := &v1alpha1.PodEgress{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: pod.Namespace, Name: pod.Name, Labels: pod.Labels,
			CreationTimestamp: pod.CreationTimestamp,
		},
		Pod: v1alpha1.PodInfo{NodeName: pod.Spec.NodeName, HostNetwork: pod.Spec.HostNetwork},
	}
	if e.ip.IsValid() {
		v.Pod.IP = e.ip.String()
	}
	if node.ip.IsValid() {
		v.Pod.NodeIP = node.ip.String()
	}
	// How the pod's node reaches each policy's egress IP; where it cannot, the pod's
	// traffic is dropped there, whatever the policy's own state.
	reach := s.nodeReach(pod.Spec.NodeName)
	redirected := s.redirected(pod)
	pathTo := func(p *routing.Policy) routing.Path {
		ip, err := netip.ParseAddr(p.Resolution.EgressIP)
		if err != nil || !p.Resolution.Ready() {
			return ""
		}
		if redirected {
			return routing.NoPath
		}
		return reach.PathTo(ip)
	}
	selected := make([]*routing.Policy, 0, len(e.selected))
	for _, name := range e.selected {
		if p := s.d.byName[name]; p != nil {
			selected = append(selected, p)
			entry := s.d.entries[name]
			switch path := pathTo(p); {
			case redirected && path == routing.NoPath:
				entry.Verdict, entry.Reason, entry.Message = v1alpha1.VerdictDrop, ReasonRedirected, routing.Redirected(pod.Spec.NodeName)
			case path == routing.NoPath:
				entry.Verdict, entry.Reason = v1alpha1.VerdictDrop, ReasonNoRoute
				entry.Message = routing.NoRoute(pod.Spec.NodeName, reach.Subnets, netip.MustParseAddr(p.Resolution.EgressIP))
			case path == routing.OnSegmentPath, path == routing.RoutedPath:
				entry.Path, entry.OverheadBytes = v1alpha1.Path(path), int32(path.Overhead())
			}
			v.Policies = append(v.Policies, entry)
		}
	}
	for _, r := range routing.Routes(selected, s.d.cluster) {
		if r.Verdict == routing.InCluster {
			continue
		}
		route := v1alpha1.Route{Destination: r.Prefix.String(), Verdict: v1alpha1.VerdictDrop, Policy: r.Policy.Name}
		if path := pathTo(r.Policy); r.Verdict == routing.SNAT && path != routing.NoPath {
			route.Verdict, route.EgressIP, route.GatewayNode = v1alpha1.VerdictSNAT, r.Policy.Resolution.EgressIP, r.Policy.Resolution.Node
			route.Path, route.OverheadBytes = v1alpha1.Path(path), int32(path.Overhead())
		}
		v.Routes = append(v.Routes, route)
		if overridden := claimants(r.Prefix, r.Policy, selected); len(overridden) > 0 {
			v.Overlaps = append(v.Overlaps, *preview.Overlap(r.Prefix, r.Policy, overridden))
		}
	}
	v.OtherTraffic = otherTraffic(pod.Spec.NodeName, node.ip, pod.Spec.HostNetwork, len(v.Routes) > 0)
	return v
}

// ReasonRedirected is a selecting policy's reason in the view of a pod whose node's agent
// found another BPF program on the pod's interface.
const ReasonRedirected = "RedirectedPastRouting"

// redirected says whether the agent of pod's node reports another program on its
// interface.
func (s *Store) redirected(pod *corev1.Pod) bool {
	return slices.Contains(s.in.redirected[pod.Spec.NodeName], pod.Namespace+"/"+pod.Name)
}

// ReasonNoRoute is a selecting policy's reason in the view of a pod whose node cannot
// reach the policy's egress IP: no interface on its subnet, and no router.
const ReasonNoRoute = "NoRouteToEgressIP"

// nodeReach is what node's agent reports about reaching egress IPs (no subnets if it
// has not reported).
func (s *Store) nodeReach(node string) routing.NodeReach {
	r := s.in.reach[node]
	r.Subnets = slices.Clone(r.Subnets)
	return r
}

// paths groups the nodes whose agents report their interfaces by how each reaches ip.
func (s *Store) paths(ip netip.Addr) []v1alpha1.NodePaths {
	by := map[routing.Path][]string{}
	for node, reach := range s.in.reach {
		if len(reach.Subnets) > 0 {
			p := reach.PathTo(ip)
			by[p] = append(by[p], node)
		}
	}
	var out []v1alpha1.NodePaths
	for _, p := range []routing.Path{routing.OnSegmentPath, routing.RoutedPath, routing.NoPath} {
		if nodes := by[p]; len(nodes) > 0 {
			slices.Sort(nodes)
			out = append(out, v1alpha1.NodePaths{Path: v1alpha1.Path(p), OverheadBytes: int32(p.Overhead()), Nodes: nodes})
		}
	}
	return out
}

// claimants are the selected policies, other than winner, with a destination that
// contains prefix: their traffic to it follows winner's route.
func claimants(prefix netip.Prefix, winner *routing.Policy, selected []*routing.Policy) []*routing.Policy {
	var out []*routing.Policy
	for _, p := range selected {
		if p == winner {
			continue
		}
		for _, d := range p.Destinations {
			if d.Bits() <= prefix.Bits() && d.Contains(prefix.Addr()) {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

func otherTraffic(node string, ip netip.Addr, hostNetwork, steered bool) v1alpha1.OtherTraffic {
	o := v1alpha1.OtherTraffic{Verdict: v1alpha1.VerdictMasquerade, NodeName: node}
	to := "its own IP"
	if ip.IsValid() {
		o.NodeIP = ip.String()
		to = "its IP " + o.NodeIP
	}
	switch {
	case node == "":
		o.Message = "the pod is not scheduled yet: once it runs, its node masquerades its traffic to the node's IP"
	case hostNetwork:
		o.Message = fmt.Sprintf("the pod uses the host network: all its traffic is node %s's own and leaves with %s", node, to)
	case steered:
		o.Message = fmt.Sprintf("traffic to other destinations outside the cluster is masqueraded by node %s to %s; traffic inside the cluster keeps the pod's IP", node, to)
	default:
		o.Message = fmt.Sprintf("no EgressNATPolicy selects the pod: node %s masquerades its traffic to %s; traffic inside the cluster keeps the pod's IP", node, to)
	}
	return o
}

// policyView lays out one policy for the egresspolicyviews resource.
func (s *Store) policyView(name string) *v1alpha1.EgressPolicyView {
	obj, e := s.in.policies[name], s.d.entries[name]
	v := &v1alpha1.EgressPolicyView{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, CreationTimestamp: obj.CreationTimestamp, Labels: obj.Labels,
			ResourceVersion: strconv.FormatUint(s.rv, 10),
		},
		Destinations: e.Destinations, Gateway: e.Gateway, EgressIP: e.EgressIP, GatewayNode: e.GatewayNode,
		HeldBy: e.HeldBy, Verdict: e.Verdict, Reason: e.Reason, Message: e.Message,
		SelectedPods: int32(len(s.d.selected[name])),
	}
	if ip, err := netip.ParseAddr(e.EgressIP); err == nil && e.Verdict == v1alpha1.VerdictSNAT {
		v.Paths = s.paths(ip)
	}
	v.Standby = s.standby(e.EgressIP, e.GatewayNode)
	return v.DeepCopy()
}

// standby is ip's standby, and the state of its copy of holder's connections as the
// holder reports it.
func (s *Store) standby(ip, holder string) *v1alpha1.StandbyView {
	node, ok := s.d.gateways.Standby(ip)
	if !ok || holder == "" {
		return nil
	}
	out := &v1alpha1.StandbyView{Node: node, Copy: v1alpha1.CopyNone}
	for _, c := range s.in.copies[holder] {
		if c.IP == ip && c.Standby == node {
			since := c.LastTransitionTime
			out.Copy, out.Entries, out.LagMilliseconds, out.Since = c.State, c.Entries, c.LagMilliseconds, &since
		}
	}
	return out
}
