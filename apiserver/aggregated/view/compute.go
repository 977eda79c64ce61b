package view

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"

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
	// Where the pod's node cannot reach a policy's egress IP, its traffic is dropped there
	// (routing.OffSegment), whatever the policy's own state.
	subnets := s.nodeSubnets(pod.Spec.NodeName)
	offSegment := func(p *routing.Policy) string {
		ip, err := netip.ParseAddr(p.Resolution.EgressIP)
		if err != nil || !p.Resolution.Ready() {
			return ""
		}
		return routing.OffSegment(pod.Spec.NodeName, subnets, ip)
	}
	selected := make([]*routing.Policy, 0, len(e.selected))
	for _, name := range e.selected {
		if p := s.d.byName[name]; p != nil {
			selected = append(selected, p)
			entry := s.d.entries[name]
			if why := offSegment(p); why != "" {
				entry.Verdict, entry.Reason, entry.Message = v1alpha1.VerdictDrop, ReasonOffSegment, why
			}
			v.Policies = append(v.Policies, entry)
		}
	}
	for _, r := range routing.Routes(selected, s.d.cluster) {
		if r.Verdict == routing.InCluster {
			continue
		}
		route := v1alpha1.Route{Destination: r.Prefix.String(), Verdict: v1alpha1.VerdictDrop, Policy: r.Policy.Name}
		if r.Verdict == routing.SNAT && offSegment(r.Policy) == "" {
			route.Verdict, route.EgressIP, route.GatewayNode = v1alpha1.VerdictSNAT, r.Policy.Resolution.EgressIP, r.Policy.Resolution.Node
		}
		v.Routes = append(v.Routes, route)
		if overridden := claimants(r.Prefix, r.Policy, selected); len(overridden) > 0 {
			v.Overlaps = append(v.Overlaps, *preview.Overlap(r.Prefix, r.Policy, overridden))
		}
	}
	v.OtherTraffic = otherTraffic(pod.Spec.NodeName, node.ip, pod.Spec.HostNetwork, len(v.Routes) > 0)
	return v
}

// ReasonOffSegment is a selecting policy's reason in the view of a pod whose node cannot
// reach the policy's egress IP.
const ReasonOffSegment = "EgressIPOffSegment"

// nodeSubnets are the interface subnets node's agent reports (none if it has not).
func (s *Store) nodeSubnets(node string) []netip.Prefix {
	return slices.Clone(s.in.subnets[node])
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
	return v.DeepCopy()
}
