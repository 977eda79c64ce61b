package preview

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/egressgw/egressgw/apiserver/aggregated/netpolicy"
	"github.com/egressgw/egressgw/apiserver/apis/egress/v1alpha1"
	"github.com/egressgw/egressgw/apiserver/routing"
)

// Input is what a preview reads: the source pod and a snapshot of the cluster. Every field
// is read, never written.
type Input struct {
	Pod             *corev1.Pod
	NamespaceLabels map[string]string
	// NodeIP is the InternalIP of the pod's node: what unsteered traffic is masqueraded to.
	NodeIP netip.Addr
	// NodeReach is what the agent of the pod's node reports about reaching egress IPs;
	// no subnets if it has not reported.
	NodeReach routing.NodeReach
	// Redirected says that the agent of the pod's node reports another BPF program on
	// the pod's interface: its selected traffic is dropped.
	Redirected bool
	// Policies and Cluster are what the node agents build their tables from.
	Policies *routing.Policies
	Cluster  []netip.Prefix
	// NetworkPolicies are those of the pod's namespace.
	NetworkPolicies []*networkingv1.NetworkPolicy
	// Peer is the pod at the destination address, if there is one.
	Peer *netpolicy.Peer
	// HeldBy maps an egress IP to the nodes whose agents report it configured.
	HeldBy map[string][]string
}

// Run previews pkt leaving in.Pod.
func Run(in Input, pkt netpolicy.Packet) v1alpha1.EgressPreviewStatus {
	pod := routing.PodOf(in.Pod)
	pod.NodeReach, pod.Redirected = in.NodeReach, in.Redirected
	p := path{pod: pod}
	p.status.Pod = &v1alpha1.PodReference{Namespace: pod.Namespace, Name: pod.Name, NodeName: pod.Node}
	if pod.IP.IsValid() {
		p.status.Pod.IP = pod.IP.String()
	}

	// 1. NetworkPolicy, which runs first in the node's FORWARD chain.
	np := netpolicy.Evaluate(in.NetworkPolicies, in.Pod, pkt, in.Peer)
	msg := strings.Join(append([]string{np.Reason}, np.Notes...), "; ")
	if !np.Allowed {
		p.add(v1alpha1.StageNetworkPolicy, "Drop", pod.Node, objects("NetworkPolicy", np.Isolating), msg)
		p.status.Verdict = v1alpha1.VerdictDrop
		return p.status
	}
	var allowedBy string
	if np.AllowedBy != nil {
		allowedBy = np.AllowedBy.String()
	}
	p.add(v1alpha1.StageNetworkPolicy, "Allow", pod.Node, allowedBy, msg)

	// 2. The egress decision: the same tables the node agent programs.
	d := in.Policies.Decide(pod, in.NamespaceLabels, in.Cluster, pkt.Destination)
	switch d.Verdict {
	case routing.InCluster:
		p.inCluster(d)
	case routing.Masquerade:
		p.masquerade(d, in.NodeIP)
	case routing.Drop:
		p.add(v1alpha1.StageEgressNATPolicy, "Drop", pod.Node, "EgressNATPolicy "+d.Policy.Name, d.Reason)
		p.status.Verdict, p.status.Policy = v1alpha1.VerdictDrop, d.Policy.Name
		p.status.Overlap = overlapAt(d, pkt.Destination)
	case routing.SNAT:
		p.snat(d, pkt.Destination, in.HeldBy[d.EgressIP.String()])
	}
	return p.status
}

type path struct {
	pod    routing.Pod
	status v1alpha1.EgressPreviewStatus
}

func (p *path) add(stage v1alpha1.Stage, action, node, object, message string) {
	p.status.Steps = append(p.status.Steps, v1alpha1.PathStep{Stage: stage, Action: action, Node: node, Object: object, Message: message})
}

func (p *path) inCluster(d routing.Decision) {
	p.status.Verdict = v1alpha1.VerdictInCluster
	if p.pod.IP.IsValid() {
		p.status.SourceIP = p.pod.IP.String()
	}
	p.add(v1alpha1.StageEgressNATPolicy, "Route", p.pod.Node, "", d.Reason+"; it keeps the pod's IP")
	p.add(v1alpha1.StageReturn, "Deliver", p.pod.Node, "", "the reply comes back over the cluster network to the pod's IP")
}

func (p *path) masquerade(d routing.Decision, nodeIP netip.Addr) {
	p.status.Verdict = v1alpha1.VerdictMasquerade
	p.status.GatewayNode = p.pod.Node
	to := "its own IP"
	if nodeIP.IsValid() {
		p.status.SourceIP = nodeIP.String()
		to = "its IP " + nodeIP.String()
	}
	p.add(v1alpha1.StageEgressNATPolicy, "Masquerade", p.pod.Node, "", d.Reason)
	p.add(v1alpha1.StageGateway, "Masquerade", p.pod.Node, "",
		fmt.Sprintf("node %s masquerades the packet to %s and it leaves the cluster from there", p.pod.Node, to))
	p.add(v1alpha1.StageReturn, "Conntrack", p.pod.Node, "",
		fmt.Sprintf("node %s's conntrack entry rewrites the reply's destination back to the pod's IP", p.pod.Node))
	p.deliver()
}

func (p *path) snat(d routing.Decision, dst netip.Addr, heldBy []string) {
	egressIP, gw := d.EgressIP.String(), d.GatewayNode
	p.status.Verdict, p.status.Policy = v1alpha1.VerdictSNAT, d.Policy.Name
	p.status.SourceIP, p.status.GatewayNode = egressIP, gw
	p.status.Overlap = overlapAt(d, dst)
	p.status.Path, p.status.OverheadBytes = v1alpha1.Path(d.Path), int32(d.Path.Overhead())
	how := fmt.Sprintf("sends the packet, unchanged, to %s, the virtual MAC of the egress IP %s", routing.VirtualMAC(d.EgressIP), egressIP)
	if d.Path == routing.RoutedPath {
		how = fmt.Sprintf("has no interface on the egress IP %s's subnet: it wraps the packet in an IPv4 header (IPv4-in-IPv4, %d bytes) to %s and routes it there; the router on that subnet delivers it to %s, the IP's virtual MAC, and the gateway unwraps it",
			egressIP, routing.RoutedOverhead, egressIP, routing.VirtualMAC(d.EgressIP))
	}
	p.add(v1alpha1.StageEgressNATPolicy, "Steer", p.pod.Node, "EgressNATPolicy "+d.Policy.Name,
		fmt.Sprintf("EgressNATPolicy %s selects the pod for %s: node %s %s", d.Policy.Name, winningPrefix(d, dst), p.pod.Node, how))
	msg := fmt.Sprintf("node %s holds %s, SNATs the packet to it, and it leaves the cluster from there", gw, egressIP)
	if !slices.Contains(heldBy, gw) {
		msg += fmt.Sprintf("; but node %s's agent does not report %s configured yet, and until it does the packet is dropped (fail closed)", gw, egressIP)
	}
	p.add(v1alpha1.StageGateway, "SNAT", gw, "", msg)
	p.add(v1alpha1.StageReturn, "Conntrack", gw, "",
		fmt.Sprintf("the reply to %s arrives at node %s, whose conntrack entry rewrites its destination back to the pod's IP", egressIP, gw))
	if gw != p.pod.Node {
		p.add(v1alpha1.StageReturn, "Route", gw, "",
			fmt.Sprintf("node %s routes the reply over the cluster network to node %s, which runs the pod", gw, p.pod.Node))
	}
	p.deliver()
}

func (p *path) deliver() {
	ip := "its IP"
	if p.pod.IP.IsValid() {
		ip = p.pod.IP.String()
	}
	p.add(v1alpha1.StageReturn, "Deliver", p.pod.Node, "",
		fmt.Sprintf("node %s delivers the reply to pod %s/%s at %s", p.pod.Node, p.pod.Namespace, p.pod.Name, ip))
}

// overlapAt explains a decision whose destination other selecting policies claim too.
func overlapAt(d routing.Decision, dst netip.Addr) *v1alpha1.Overlap {
	if len(d.Overlaps) == 0 {
		return nil
	}
	return Overlap(winningPrefix(d, dst), d.Policy, d.Overlaps)
}

// winningPrefix is the route the decision took: the longest destination of its policy
// that contains dst.
func winningPrefix(d routing.Decision, dst netip.Addr) netip.Prefix {
	var prefix netip.Prefix
	for _, dest := range d.Policy.Destinations {
		if dest.Contains(dst) && (!prefix.IsValid() || dest.Bits() > prefix.Bits()) {
			prefix = dest
		}
	}
	return prefix
}

// Overlap says, by the documented rule, why winner's route for prefix beats the other
// policies that claim it; overridden are those policies.
func Overlap(prefix netip.Prefix, winner *routing.Policy, overridden []*routing.Policy) *v1alpha1.Overlap {
	o := &v1alpha1.Overlap{Destination: prefix.String(), Policy: winner.Name}
	var rules []string
	for _, p := range overridden {
		o.Overridden = append(o.Overridden, p.Name)
		rule := "the longest prefix wins"
		if slices.Contains(p.Destinations, prefix) {
			rule = "on an equal prefix the older policy wins"
			if p.Created.Equal(winner.Created) {
				rule = "on an equal prefix and age the name that sorts first wins"
			}
		}
		if !slices.Contains(rules, rule) {
			rules = append(rules, rule)
		}
	}
	o.Rule = strings.Join(rules, "; ")
	return o
}

func objects(kind string, refs []string) string {
	out := make([]string, len(refs))
	for i, r := range refs {
		out[i] = kind + " " + r
	}
	return strings.Join(out, ", ")
}
