package preview

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egressgw/egressgw/apiserver/aggregated/netpolicy"
	"github.com/egressgw/egressgw/apiserver/apis/egress/v1alpha1"
	"github.com/egressgw/egressgw/apiserver/apis/networking"
	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/apiserver/routing"
)

var (
	cluster = []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("198.51.100.0/24")}
	nodeIPs = map[string]netip.Addr{"node1": netip.MustParseAddr("198.51.100.11"), "node2": netip.MustParseAddr("198.51.100.12")}
	epoch   = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
)

// specPolicy is the spec's EgressNATPolicy: role=frontend pods of alice and paul, to
// 8.8.8.0/24, through the gateway kube-system/default.
func specPolicy() *v1.EgressNATPolicy {
	src := func(user string) v1.EgressSource {
		return v1.EgressSource{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"user": user}},
			PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"role": "frontend"}},
		}
	}
	return &v1.EgressNATPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "egress", CreationTimestamp: metav1.NewTime(epoch)},
		Spec: v1.EgressNATPolicySpec{
			Sources: []v1.EgressSource{src("alice"), src("paul")}, Action: v1.ActionSNAT,
			Destinations: []v1.Destination{{CIDR: "8.8.8.0/24"}},
			GatewayRef:   &v1.GatewayReference{Namespace: "kube-system", Name: "default"},
		},
	}
}

// widePolicy sends all of alice's frontend traffic through gateway kube-system/wide; it is
// newer than the spec's policy.
func widePolicy(gateway string) *v1.EgressNATPolicy {
	p := specPolicy()
	p.Name, p.CreationTimestamp = "wide", metav1.NewTime(epoch.Add(time.Hour))
	p.Spec.Sources = p.Spec.Sources[:1]
	p.Spec.Destinations = []v1.Destination{{CIDR: "0.0.0.0/0"}, {CIDR: "8.8.8.0/24"}}
	p.Spec.GatewayRef.Name = gateway
	return p
}

// compile resolves like the controller: the first floating IP of the named gateway, on the
// node the gateway's status places it.
func compile(policies ...*v1.EgressNATPolicy) *routing.Policies {
	placed := map[string]string{"198.51.100.100": "node2", "198.51.100.101": "node1", "198.51.100.110": "node1"}
	group := func(name string, ips ...string) routing.Gateway {
		return routing.Gateway{Ref: networking.ObjectRef{Kind: networking.KindNetworkGatewayGroup, Namespace: "kube-system", Name: name}, FloatingIPs: ips, Placed: placed}
	}
	gateways := routing.NewGateways([]routing.Gateway{
		group("default", "198.51.100.100", "198.51.100.101", "198.51.100.102"),
		group("wide", "198.51.100.110"),
		group("unheld", "198.51.100.120"),
	})
	return routing.Compile(policies, func(p *v1.EgressNATPolicy) routing.Resolution {
		return routing.Resolve(&p.Spec, gateways, nil)
	})
}

func pod(namespace, name, node, ip string, labels ...string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: map[string]string{}},
		Spec:       corev1.PodSpec{NodeName: node},
		Status:     corev1.PodStatus{PodIP: ip},
	}
	for i := 0; i+1 < len(labels); i += 2 {
		p.Labels[labels[i]] = labels[i+1]
	}
	return p
}

func denyGoogle() *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "alice", Name: "deny-google-dns"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress: []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{
				{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0", Except: []string{"8.8.8.8/32"}}},
			}}},
		},
	}
}

func TestRun(t *testing.T) {
	frontend := pod("alice", "frontend", "node1", "198.18.1.10", "role", "frontend")
	paul := pod("paul", "frontend", "node2", "198.18.2.10", "role", "frontend")
	backend := pod("alice", "backend", "node1", "198.18.1.11", "role", "backend")
	ns := map[string]map[string]string{"alice": {"user": "alice"}, "paul": {"user": "paul"}}
	held := map[string][]string{"198.51.100.100": {"node2"}, "198.51.100.110": {"node1"}}
	tcp := func(dst string, port int32) netpolicy.Packet {
		return netpolicy.Packet{Destination: netip.MustParseAddr(dst), Protocol: corev1.ProtocolTCP, Port: port}
	}

	tests := []struct {
		name     string
		pod      *corev1.Pod
		policies *routing.Policies
		netpols  []*networkingv1.NetworkPolicy
		heldBy   map[string][]string
		pkt      netpolicy.Packet
		want     v1alpha1.Verdict
		sourceIP string
		gateway  string
		policy   string
		// steps are "Stage/Action@node" in order.
		steps []string
		// says are substrings of the messages, in order of the steps they appear in.
		says []string
		// overridden are the policies the overlap says lost.
		overridden []string
	}{{
		name: "spec: alice's frontend to 8.8.8.8 leaves with the gateway's first IP, via the node that holds it",
		pod:  frontend, policies: compile(specPolicy()), pkt: tcp("8.8.8.8", 443),
		want: v1alpha1.VerdictSNAT, sourceIP: "198.51.100.100", gateway: "node2", policy: "egress",
		steps: []string{"NetworkPolicy/Allow@node1", "EgressNATPolicy/Steer@node1", "Gateway/SNAT@node2",
			"Return/Conntrack@node2", "Return/Route@node2", "Return/Deliver@node1"},
		says: []string{"no NetworkPolicy", "EgressNATPolicy egress selects the pod for 8.8.8.0/24", "node node2 holds 198.51.100.100",
			"conntrack", "to node node1", "alice/frontend at 198.18.1.10"},
	}, {
		name: "spec: paul's frontend too, and its reply needs no second hop when it runs on the gateway",
		pod:  paul, policies: compile(specPolicy()), pkt: tcp("8.8.8.8", 53),
		want: v1alpha1.VerdictSNAT, sourceIP: "198.51.100.100", gateway: "node2", policy: "egress",
		steps: []string{"NetworkPolicy/Allow@node2", "EgressNATPolicy/Steer@node2", "Gateway/SNAT@node2", "Return/Conntrack@node2", "Return/Deliver@node2"},
	}, {
		name: "spec: a pod without role=frontend is masqueraded to its node's IP",
		pod:  backend, policies: compile(specPolicy()), pkt: tcp("8.8.8.8", 443),
		want: v1alpha1.VerdictMasquerade, sourceIP: "198.51.100.11", gateway: "node1",
		steps: []string{"NetworkPolicy/Allow@node1", "EgressNATPolicy/Masquerade@node1", "Gateway/Masquerade@node1", "Return/Conntrack@node1", "Return/Deliver@node1"},
		says:  []string{"", "no EgressNATPolicy selects the pod", "its IP 198.51.100.11"},
	}, {
		name: "spec: the frontend pod to 1.1.1.1 is masqueraded to its node's IP",
		pod:  frontend, policies: compile(specPolicy()), pkt: tcp("1.1.1.1", 443),
		want: v1alpha1.VerdictMasquerade, sourceIP: "198.51.100.11", gateway: "node1",
		steps: []string{"NetworkPolicy/Allow@node1", "EgressNATPolicy/Masquerade@node1", "Gateway/Masquerade@node1", "Return/Conntrack@node1", "Return/Deliver@node1"},
		says:  []string{"", "no destination of the policies that select the pod contains 1.1.1.1"},
	}, {
		name: "spec: an egress NetworkPolicy that denies 8.8.8.8 drops the packet before any gateway, and is named",
		pod:  frontend, policies: compile(specPolicy()), netpols: []*networkingv1.NetworkPolicy{denyGoogle()}, pkt: tcp("8.8.8.8", 443),
		want:  v1alpha1.VerdictDrop,
		steps: []string{"NetworkPolicy/Drop@node1"},
		says:  []string{"NetworkPolicy alice/deny-google-dns selects the pod for egress, and none of its rules allows TCP to 8.8.8.8:443"},
	}, {
		name: "the same NetworkPolicy allows 8.8.8.4, which then egresses as usual",
		pod:  frontend, policies: compile(specPolicy()), netpols: []*networkingv1.NetworkPolicy{denyGoogle()}, pkt: tcp("8.8.8.4", 443),
		want: v1alpha1.VerdictSNAT, sourceIP: "198.51.100.100", gateway: "node2", policy: "egress",
		says: []string{"allowed by NetworkPolicy alice/deny-google-dns spec.egress[0]"},
		steps: []string{"NetworkPolicy/Allow@node1", "EgressNATPolicy/Steer@node1", "Gateway/SNAT@node2",
			"Return/Conntrack@node2", "Return/Route@node2", "Return/Deliver@node1"},
	}, {
		name: "in-cluster destinations keep the pod's IP",
		pod:  frontend, policies: compile(widePolicy("wide")), pkt: tcp("198.18.2.10", 80),
		want: v1alpha1.VerdictInCluster, sourceIP: "198.18.1.10",
		steps: []string{"NetworkPolicy/Allow@node1", "EgressNATPolicy/Route@node1", "Return/Deliver@node1"},
	}, {
		name: "overlap: the older policy wins the equal prefix, and the preview says so",
		pod:  frontend, policies: compile(specPolicy(), widePolicy("wide")), pkt: tcp("8.8.8.8", 443),
		want: v1alpha1.VerdictSNAT, sourceIP: "198.51.100.100", gateway: "node2", policy: "egress",
		overridden: []string{"wide"},
		steps: []string{"NetworkPolicy/Allow@node1", "EgressNATPolicy/Steer@node1", "Gateway/SNAT@node2",
			"Return/Conntrack@node2", "Return/Route@node2", "Return/Deliver@node1"},
	}, {
		name: "the wider policy takes the rest",
		pod:  frontend, policies: compile(specPolicy(), widePolicy("wide")), pkt: tcp("1.1.1.1", 443),
		want: v1alpha1.VerdictSNAT, sourceIP: "198.51.100.110", gateway: "node1", policy: "wide",
		steps: []string{"NetworkPolicy/Allow@node1", "EgressNATPolicy/Steer@node1", "Gateway/SNAT@node1", "Return/Conntrack@node1", "Return/Deliver@node1"},
	}, {
		name: "a policy whose egress IP no node holds drops, fail closed",
		pod:  frontend, policies: compile(widePolicy("unheld")), pkt: tcp("1.1.1.1", 443),
		want: v1alpha1.VerdictDrop, policy: "wide",
		steps: []string{"NetworkPolicy/Allow@node1", "EgressNATPolicy/Drop@node1"},
		says:  []string{"", "198.51.100.120 is assigned to no node"},
	}, {
		name: "a gateway whose agent has not configured the IP yet: the path says the packet is dropped until it does",
		pod:  frontend, policies: compile(specPolicy()), heldBy: map[string][]string{}, pkt: tcp("8.8.8.8", 443),
		want: v1alpha1.VerdictSNAT, sourceIP: "198.51.100.100", gateway: "node2", policy: "egress",
		steps: []string{"NetworkPolicy/Allow@node1", "EgressNATPolicy/Steer@node1", "Gateway/SNAT@node2",
			"Return/Conntrack@node2", "Return/Route@node2", "Return/Deliver@node1"},
		says: []string{"", "", "does not report 198.51.100.100 configured yet"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			heldBy := held
			if tt.heldBy != nil {
				heldBy = tt.heldBy
			}
			got := Run(Input{
				Pod: tt.pod, NamespaceLabels: ns[tt.pod.Namespace], NodeIP: nodeIPs[tt.pod.Spec.NodeName],
				Policies: tt.policies, Cluster: cluster, NetworkPolicies: tt.netpols, HeldBy: heldBy,
			}, tt.pkt)
			var steps []string
			for _, s := range got.Steps {
				steps = append(steps, string(s.Stage)+"/"+s.Action+"@"+s.Node)
			}
			var overridden []string
			if got.Overlap != nil {
				overridden = got.Overlap.Overridden
			}
			want := []any{tt.want, tt.sourceIP, tt.gateway, tt.policy, tt.steps, tt.overridden}
			if diff := cmp.Diff(want, []any{got.Verdict, got.SourceIP, got.GatewayNode, got.Policy, steps, overridden}); diff != "" {
				t.Errorf("verdict, source IP, gateway, policy, steps, overridden (-want +got):\n%s\n%+v", diff, got.Steps)
			}
			for i, s := range tt.says {
				if i < len(got.Steps) && !strings.Contains(got.Steps[i].Message, s) {
					t.Errorf("step %d says %q, want it to say %q", i, got.Steps[i].Message, s)
				}
			}
			if tt.want == v1alpha1.VerdictDrop && tt.steps[0] == "NetworkPolicy/Drop@node1" && got.Steps[0].Object != "NetworkPolicy alice/deny-google-dns" {
				t.Errorf("the drop names %q, want the NetworkPolicy", got.Steps[0].Object)
			}
		})
	}
}

func TestOverlapRule(t *testing.T) {
	ps := compile(specPolicy(), widePolicy("wide")).Items()
	older, newer := ps[0], ps[1]
	tests := []struct {
		name   string
		prefix string
		winner *routing.Policy
		losers []*routing.Policy
		want   string
	}{
		{name: "equal prefix", prefix: "8.8.8.0/24", winner: older, losers: []*routing.Policy{newer}, want: "on an equal prefix the older policy wins"},
		{name: "longer prefix", prefix: "8.8.8.0/24", winner: newer, losers: []*routing.Policy{{Name: "x", Destinations: []netip.Prefix{netip.MustParsePrefix("8.8.0.0/16")}}}, want: "the longest prefix wins"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Overlap(netip.MustParsePrefix(tt.prefix), tt.winner, tt.losers); got.Rule != tt.want {
				t.Errorf("rule %q, want %q", got.Rule, tt.want)
			}
		})
	}
}
