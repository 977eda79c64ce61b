package netpolicy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func pod(namespace, name string, labels ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: map[string]string{}}}
	for i := 0; i+1 < len(labels); i += 2 {
		p.Labels[labels[i]] = labels[i+1]
	}
	return p
}

// egressPolicy is a NetworkPolicy in alice selecting role=frontend, with the given rules.
func egressPolicy(name string, rules ...networkingv1.NetworkPolicyEgressRule) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "alice", Name: name},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "frontend"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress:      rules,
		},
	}
}

func toBlock(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
}

func port(protocol corev1.Protocol, p intstr.IntOrString, end int32) networkingv1.NetworkPolicyPort {
	np := networkingv1.NetworkPolicyPort{Port: &p}
	if protocol != "" {
		np.Protocol = &protocol
	}
	if end != 0 {
		np.EndPort = &end
	}
	return np
}

func rule(to []networkingv1.NetworkPolicyPeer, ports ...networkingv1.NetworkPolicyPort) networkingv1.NetworkPolicyEgressRule {
	return networkingv1.NetworkPolicyEgressRule{To: to, Ports: ports}
}

func TestEvaluate(t *testing.T) {
	frontend := pod("alice", "fe", "role", "frontend")
	backend := pod("alice", "be", "role", "backend")
	dns := pod("kube-system", "coredns", "k8s-app", "kube-dns")
	dns.Spec.Containers = []corev1.Container{{Ports: []corev1.ContainerPort{{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP}}}}
	dnsPeer := &Peer{Pod: dns, NamespaceLabels: map[string]string{"kubernetes.io/metadata.name": "kube-system"}}
	sameNS := &Peer{Pod: pod("alice", "db", "role", "db"), NamespaceLabels: map[string]string{"user": "alice"}}
	tcp := func(dst string, p int32) Packet {
		return Packet{Destination: netip.MustParseAddr(dst), Protocol: corev1.ProtocolTCP, Port: p}
	}
	udp := func(dst string, p int32) Packet {
		return Packet{Destination: netip.MustParseAddr(dst), Protocol: corev1.ProtocolUDP, Port: p}
	}
	denyAll := egressPolicy("deny-all")
	allowWeb := egressPolicy("allow-web", rule([]networkingv1.NetworkPolicyPeer{toBlock("0.0.0.0/0", "8.8.8.0/24")}, port("", intstr.FromInt32(443), 0)))
	allowRange := egressPolicy("allow-range", rule(nil, port(corev1.ProtocolUDP, intstr.FromInt32(5000), 5010)))
	allowDNS := egressPolicy("allow-dns", rule([]networkingv1.NetworkPolicyPeer{{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "kube-system"}},
		PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "kube-dns"}},
	}}, port(corev1.ProtocolUDP, intstr.FromString("dns"), 0)))
	allowSameNS := egressPolicy("allow-same-ns", rule([]networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}))
	ingressOnly := egressPolicy("ingress-only")
	ingressOnly.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	noTypesNoRules := egressPolicy("no-types")
	noTypesNoRules.Spec.PolicyTypes = nil
	otherNS := egressPolicy("other-namespace")
	otherNS.Namespace = "bob"

	tests := []struct {
		name      string
		policies  []*networkingv1.NetworkPolicy
		src       *corev1.Pod
		pkt       Packet
		dst       *Peer
		want      bool
		allowedBy string
		isolating []string
		note      string
	}{
		{name: "no policy: allowed", src: frontend, pkt: tcp("8.8.8.8", 443), want: true},
		{name: "a policy without egress rules denies everything", policies: []*networkingv1.NetworkPolicy{denyAll}, src: frontend, pkt: tcp("8.8.8.8", 443), isolating: []string{"alice/deny-all"}},
		{name: "a policy that does not select the pod does not isolate it", policies: []*networkingv1.NetworkPolicy{denyAll}, src: backend, pkt: tcp("8.8.8.8", 443), want: true},
		{name: "an ingress-only policy does not isolate egress", policies: []*networkingv1.NetworkPolicy{ingressOnly}, src: frontend, pkt: tcp("8.8.8.8", 443), want: true},
		{name: "without policyTypes and egress rules, a policy is ingress-only", policies: []*networkingv1.NetworkPolicy{noTypesNoRules}, src: frontend, pkt: tcp("8.8.8.8", 443), want: true},
		{name: "a policy of another namespace is ignored", policies: []*networkingv1.NetworkPolicy{otherNS}, src: frontend, pkt: tcp("8.8.8.8", 443), want: true},
		{name: "ipBlock and port allow", policies: []*networkingv1.NetworkPolicy{allowWeb}, src: frontend, pkt: tcp("1.1.1.1", 443), want: true, allowedBy: "alice/allow-web[0]", isolating: []string{"alice/allow-web"}},
		{name: "ipBlock except denies 8.8.8.8", policies: []*networkingv1.NetworkPolicy{allowWeb}, src: frontend, pkt: tcp("8.8.8.8", 443), isolating: []string{"alice/allow-web"}},
		{name: "the wrong port is denied", policies: []*networkingv1.NetworkPolicy{allowWeb}, src: frontend, pkt: tcp("1.1.1.1", 80), isolating: []string{"alice/allow-web"}},
		{name: "the wrong protocol is denied (port defaults to TCP)", policies: []*networkingv1.NetworkPolicy{allowWeb}, src: frontend, pkt: udp("1.1.1.1", 443), isolating: []string{"alice/allow-web"}},
		{name: "ICMP never matches a rule with ports", policies: []*networkingv1.NetworkPolicy{allowWeb}, src: frontend, pkt: Packet{Destination: netip.MustParseAddr("1.1.1.1"), Protocol: ProtocolICMP}, isolating: []string{"alice/allow-web"}},
		{name: "ICMP matches a rule without ports", policies: []*networkingv1.NetworkPolicy{allowSameNS}, src: frontend, dst: sameNS, pkt: Packet{Destination: netip.MustParseAddr("198.18.1.20"), Protocol: ProtocolICMP}, want: true, allowedBy: "alice/allow-same-ns[0]", isolating: []string{"alice/allow-same-ns"}},
		{name: "no port given: a rule with ports does not match, and says so", policies: []*networkingv1.NetworkPolicy{allowWeb}, src: frontend, pkt: tcp("1.1.1.1", 0), isolating: []string{"alice/allow-web"}, note: "has no port"},
		{name: "endPort: inside the range", policies: []*networkingv1.NetworkPolicy{allowRange}, src: frontend, pkt: udp("1.1.1.1", 5010), want: true, allowedBy: "alice/allow-range[0]", isolating: []string{"alice/allow-range"}},
		{name: "endPort: outside the range", policies: []*networkingv1.NetworkPolicy{allowRange}, src: frontend, pkt: udp("1.1.1.1", 5011), isolating: []string{"alice/allow-range"}},
		{name: "namespace and pod selectors match a destination pod, named port resolved", policies: []*networkingv1.NetworkPolicy{allowDNS}, src: frontend, dst: dnsPeer, pkt: udp("198.18.3.53", 53), want: true, allowedBy: "alice/allow-dns[0]", isolating: []string{"alice/allow-dns"}},
		{name: "named port: the wrong number", policies: []*networkingv1.NetworkPolicy{allowDNS}, src: frontend, dst: dnsPeer, pkt: udp("198.18.3.53", 54), isolating: []string{"alice/allow-dns"}},
		{name: "pod peers never match an address outside the cluster", policies: []*networkingv1.NetworkPolicy{allowDNS}, src: frontend, pkt: udp("8.8.8.8", 53), isolating: []string{"alice/allow-dns"}},
		{name: "a podSelector peer alone matches only the policy's namespace", policies: []*networkingv1.NetworkPolicy{allowSameNS}, src: frontend, dst: dnsPeer, pkt: tcp("198.18.3.53", 53), isolating: []string{"alice/allow-same-ns"}},
		{name: "policies add up: one allows what another denies", policies: []*networkingv1.NetworkPolicy{denyAll, allowWeb}, src: frontend, pkt: tcp("1.1.1.1", 443), want: true, allowedBy: "alice/allow-web[0]", isolating: []string{"alice/allow-web", "alice/deny-all"}},
		{name: "host-network pods are not subject to NetworkPolicy", policies: []*networkingv1.NetworkPolicy{denyAll}, src: func() *corev1.Pod { p := frontend.DeepCopy(); p.Spec.HostNetwork = true; return p }(), pkt: tcp("8.8.8.8", 443), want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Evaluate(tt.policies, tt.src, tt.pkt, tt.dst)
			if got.Allowed != tt.want {
				t.Fatalf("Allowed = %v, want %v (%s)", got.Allowed, tt.want, got.Reason)
			}
			var allowedBy string
			if got.AllowedBy != nil {
				allowedBy = fmt.Sprintf("%s[%d]", got.AllowedBy.Policy, got.AllowedBy.Index)
			}
			if diff := cmp.Diff([]any{tt.allowedBy, tt.isolating}, []any{allowedBy, got.Isolating}); diff != "" {
				t.Errorf("allowedBy, isolating (-want +got):\n%s", diff)
			}
			if !tt.want {
				for _, p := range tt.isolating {
					if !strings.Contains(got.Reason, p) {
						t.Errorf("the denial %q does not name %s", got.Reason, p)
					}
				}
			}
			if tt.note != "" && !strings.Contains(strings.Join(got.Notes, "\n"), tt.note) {
				t.Errorf("notes %q do not say %q", got.Notes, tt.note)
			}
			if got.Reason == "" {
				t.Error("no reason")
			}
		})
	}
}

func TestEvaluateNamedPortWithoutPeerSaysSo(t *testing.T) {
	np := egressPolicy("named", rule(nil, port(corev1.ProtocolTCP, intstr.FromString("https"), 0)))
	got := Evaluate([]*networkingv1.NetworkPolicy{np}, pod("alice", "fe", "role", "frontend"),
		Packet{Destination: netip.MustParseAddr("8.8.8.8"), Protocol: corev1.ProtocolTCP, Port: 443}, nil)
	if got.Allowed {
		t.Fatal("a named port without a destination pod allowed the packet")
	}
	if len(got.Notes) != 1 || !strings.Contains(got.Notes[0], `"https"`) {
		t.Errorf("notes = %q, want one naming the port", got.Notes)
	}
}
