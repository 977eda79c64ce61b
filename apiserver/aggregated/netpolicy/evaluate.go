package netpolicy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// ProtocolICMP is the protocol of a ping. NetworkPolicy ports cannot name it, so only a
// rule without ports allows it.
const ProtocolICMP corev1.Protocol = "ICMP"

// Packet is what leaves the source pod.
type Packet struct {
	// Destination is the packet's destination address.
	Destination netip.Addr
	// Protocol is TCP, UDP, SCTP or ICMP.
	Protocol corev1.Protocol
	// Port is the destination port; 0 when not given.
	Port int32
}

// Peer is the pod at the packet's destination, when the destination is a pod's IP.
type Peer struct {
	Pod *corev1.Pod
	// NamespaceLabels are the labels of the pod's namespace.
	NamespaceLabels map[string]string
}

// Rule names one egress rule: spec.egress[Index] of a NetworkPolicy.
type Rule struct {
	Policy string // namespace/name
	Index  int
}

func (r Rule) String() string {
	return fmt.Sprintf("NetworkPolicy %s spec.egress[%d]", r.Policy, r.Index)
}

// Verdict is NetworkPolicy's answer for one packet.
type Verdict struct {
	Allowed bool
	// Isolating are the policies (namespace/name) that select the pod for egress. Empty
	// means the pod is not isolated for egress, and everything is allowed.
	Isolating []string
	// AllowedBy is the first rule that allows the packet, in policy name order.
	AllowedBy *Rule
	// Notes are what could not be evaluated and was taken as not matching.
	Notes []string
	// Reason says it in one sentence.
	Reason string
}

// Evaluate decides whether src may send pkt. policies are the NetworkPolicies of src's
// namespace (others are ignored); dst is the pod at the destination, or nil.
func Evaluate(policies []*networkingv1.NetworkPolicy, src *corev1.Pod, pkt Packet, dst *Peer) Verdict {
	if src.Spec.HostNetwork {
		return Verdict{Allowed: true, Reason: "the pod uses the host network, which NetworkPolicy does not apply to"}
	}
	policies = slices.Clone(policies)
	slices.SortFunc(policies, func(a, b *networkingv1.NetworkPolicy) int { return strings.Compare(a.Name, b.Name) })

	var v Verdict
	for _, np := range policies {
		if np.Namespace != src.Namespace || !appliesToEgress(np) {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil {
			v.Notes = append(v.Notes, fmt.Sprintf("NetworkPolicy %s/%s: spec.podSelector does not parse (%v); taken to select nothing", np.Namespace, np.Name, err))
			continue
		}
		if !sel.Matches(labels.Set(src.Labels)) {
			continue
		}
		ref := np.Namespace + "/" + np.Name
		v.Isolating = append(v.Isolating, ref)
		if v.AllowedBy != nil {
			continue
		}
		for i, rule := range np.Spec.Egress {
			if matchesRule(np, rule, pkt, dst, &v.Notes, fmt.Sprintf("NetworkPolicy %s spec.egress[%d]", ref, i)) {
				v.AllowedBy = &Rule{Policy: ref, Index: i}
				break
			}
		}
	}
	switch {
	case len(v.Isolating) == 0:
		v.Allowed = true
		v.Reason = "no NetworkPolicy selects the pod for egress, so all its egress is allowed"
	case v.AllowedBy != nil:
		v.Allowed = true
		v.Reason = fmt.Sprintf("allowed by %s", v.AllowedBy)
	default:
		v.Reason = fmt.Sprintf("%s, and none of %s rules allows %s", policyList(v.Isolating), possessive(v.Isolating), describe(pkt))
	}
	return v
}

// appliesToEgress follows the API's defaulting: without policyTypes, a policy is an egress
// policy if it has egress rules.
func appliesToEgress(np *networkingv1.NetworkPolicy) bool {
	if len(np.Spec.PolicyTypes) == 0 {
		return len(np.Spec.Egress) > 0
	}
	return slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
}

// matchesRule: a rule allows a packet if one of its peers matches (no peers: any
// destination) and one of its ports matches (no ports: any port and protocol).
func matchesRule(np *networkingv1.NetworkPolicy, rule networkingv1.NetworkPolicyEgressRule, pkt Packet, dst *Peer, notes *[]string, where string) bool {
	if len(rule.To) > 0 && !slices.ContainsFunc(rule.To, func(p networkingv1.NetworkPolicyPeer) bool {
		return matchesPeer(np, p, pkt.Destination, dst, notes, where)
	}) {
		return false
	}
	if len(rule.Ports) == 0 {
		return true
	}
	for _, port := range rule.Ports {
		if matchesPort(port, pkt, dst, notes, where) {
			return true
		}
	}
	return false
}

func matchesPeer(np *networkingv1.NetworkPolicy, peer networkingv1.NetworkPolicyPeer, ip netip.Addr, dst *Peer, notes *[]string, where string) bool {
	if peer.IPBlock != nil {
		return inBlock(peer.IPBlock, ip)
	}
	if peer.NamespaceSelector == nil && peer.PodSelector == nil {
		return false // The API refuses this; it matches nothing.
	}
	if dst == nil || dst.Pod == nil {
		return false // Pod peers match pods only; the destination is no known pod.
	}
	if peer.NamespaceSelector == nil {
		if dst.Pod.Namespace != np.Namespace {
			return false
		}
	} else if !matches(peer.NamespaceSelector, dst.NamespaceLabels, notes, where+" namespaceSelector") {
		return false
	}
	return peer.PodSelector == nil || matches(peer.PodSelector, dst.Pod.Labels, notes, where+" podSelector")
}

func inBlock(block *networkingv1.IPBlock, ip netip.Addr) bool {
	cidr, err := netip.ParsePrefix(block.CIDR)
	if err != nil || !cidr.Contains(ip) {
		return false
	}
	for _, raw := range block.Except {
		if except, err := netip.ParsePrefix(raw); err == nil && except.Contains(ip) {
			return false
		}
	}
	return true
}

func matchesPort(port networkingv1.NetworkPolicyPort, pkt Packet, dst *Peer, notes *[]string, where string) bool {
	protocol := corev1.ProtocolTCP
	if port.Protocol != nil {
		protocol = *port.Protocol
	}
	if protocol != pkt.Protocol {
		return false
	}
	if port.Port == nil {
		return true // Every port of the protocol.
	}
	if pkt.Port == 0 {
		*notes = append(*notes, fmt.Sprintf("%s names port %s, and the packet has no port: taken as not matching", where, port.Port.String()))
		return false
	}
	number := port.Port.IntVal
	named := port.Port.Type == intstr.String
	if named {
		var ok bool
		if number, ok = namedPort(port.Port.StrVal, protocol, dst); !ok {
			*notes = append(*notes, fmt.Sprintf("%s names port %q, which only a destination pod's container ports can resolve: taken as not matching", where, port.Port.StrVal))
			return false
		}
	}
	if port.EndPort != nil && !named {
		return pkt.Port >= number && pkt.Port <= *port.EndPort
	}
	return pkt.Port == number
}

// namedPort resolves a port name against the destination pod's container ports, as the
// API defines it.
func namedPort(name string, protocol corev1.Protocol, dst *Peer) (int32, bool) {
	if dst == nil || dst.Pod == nil {
		return 0, false
	}
	for _, c := range dst.Pod.Spec.Containers {
		for _, p := range c.Ports {
			proto := p.Protocol
			if proto == "" {
				proto = corev1.ProtocolTCP
			}
			if p.Name == name && proto == protocol {
				return p.ContainerPort, true
			}
		}
	}
	return 0, false
}

func matches(sel *metav1.LabelSelector, set map[string]string, notes *[]string, where string) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		*notes = append(*notes, fmt.Sprintf("%s does not parse (%v): taken as not matching", where, err))
		return false
	}
	return s.Matches(labels.Set(set))
}

func policyList(refs []string) string {
	if len(refs) == 1 {
		return "NetworkPolicy " + refs[0] + " selects the pod for egress"
	}
	return "NetworkPolicies " + strings.Join(refs, ", ") + " select the pod for egress"
}

func possessive(refs []string) string {
	if len(refs) == 1 {
		return "its"
	}
	return "their"
}

func describe(pkt Packet) string {
	if pkt.Port == 0 || pkt.Protocol == ProtocolICMP {
		return fmt.Sprintf("%s to %s", pkt.Protocol, pkt.Destination)
	}
	return fmt.Sprintf("%s to %s", pkt.Protocol, netip.AddrPortFrom(pkt.Destination, uint16(pkt.Port)))
}
