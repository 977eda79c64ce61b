package routing

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
)

var cluster = []netip.Prefix{
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("10.96.0.0/12"),
	netip.MustParsePrefix("198.51.100.0/24"),
}

// policy builds an EgressNATPolicy created at minute `age` before a fixed instant, with
// one source per "nsLabel=value/podLabel=value" pair.
func policy(name string, age int, dests []string, sources ...[2]string) *v1.EgressNATPolicy {
	p := &v1.EgressNATPolicy{ObjectMeta: metav1.ObjectMeta{
		Name:              name,
		CreationTimestamp: metav1.NewTime(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC).Add(-time.Duration(age) * time.Minute)),
	}}
	for _, d := range dests {
		p.Spec.Destinations = append(p.Spec.Destinations, v1.Destination{CIDR: d})
	}
	for _, s := range sources {
		src := v1.EgressSource{}
		if s[0] != "" {
			src.NamespaceSelector = sel(s[0])
		}
		if s[1] != "" {
			src.PodSelector = sel(s[1])
		}
		p.Spec.Sources = append(p.Spec.Sources, src)
	}
	p.Spec.GatewayRef = &v1.GatewayReference{Namespace: "kube-system", Name: "gw-" + name}
	return p
}

func sel(kv string) *metav1.LabelSelector {
	for i := range kv {
		if kv[i] == '=' {
			return &metav1.LabelSelector{MatchLabels: map[string]string{kv[:i]: kv[i+1:]}}
		}
	}
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: kv, Operator: "Bogus"}}}
}

// resolver gives policy X the egress IP ips[X] held by node holders[ip]; a policy with no
// IP is not ready.
func resolver(ips map[string]string, holders map[string]string) func(*v1.EgressNATPolicy) Resolution {
	return func(p *v1.EgressNATPolicy) Resolution {
		ip, ok := ips[p.Name]
		if !ok {
			return Resolution{Reason: ReasonGatewayNotFound, Message: "NetworkGatewayGroup kube-system/gw-" + p.Name + " does not exist"}
		}
		node, held := holders[ip]
		if !held {
			return Resolution{EgressIP: ip, Reason: ReasonUnknownEgressIP, Message: "egress IP " + ip + " is assigned to no node"}
		}
		return Resolution{EgressIP: ip, Node: node, Reason: ReasonReady}
	}
}

func TestDecide(t *testing.T) {
	spec := policy("egress", 10, []string{"8.8.8.0/24"}, [2]string{"user=alice", "role=frontend"}, [2]string{"user=paul", "role=frontend"})
	ps := Compile([]*v1.EgressNATPolicy{
		spec,
		policy("wide", 20, []string{"0.0.0.0/0"}, [2]string{"team=wide", ""}),
		policy("narrow", 5, []string{"203.0.113.0/24"}, [2]string{"team=wide", "tier=db"}),
		policy("same-older", 30, []string{"203.0.113.128/25"}, [2]string{"team=tie", ""}),
		policy("same-newer", 1, []string{"203.0.113.128/25"}, [2]string{"team=tie", ""}),
		policy("a-same-age", 7, []string{"1.1.1.0/24"}, [2]string{"team=name", ""}),
		policy("b-same-age", 7, []string{"1.1.1.0/24"}, [2]string{"team=name", ""}),
		policy("inside-cluster", 3, []string{"10.96.0.0/16"}, [2]string{"team=wide", ""}),
		policy("orphan", 3, []string{"9.9.9.0/24"}, [2]string{"team=orphan", ""}),
		policy("unheld", 3, []string{"9.9.9.0/24"}, [2]string{"team=unheld", ""}),
		policy("bad-selector", 3, []string{"0.0.0.0/0"}, [2]string{"oops", ""}),
	}, resolver(map[string]string{
		"egress": "198.51.100.100", "wide": "198.51.100.101", "narrow": "198.51.100.102",
		"same-older": "198.51.100.103", "same-newer": "198.51.100.104",
		"a-same-age": "198.51.100.105", "b-same-age": "198.51.100.106", "inside-cluster": "198.51.100.107",
		"unheld": "198.51.100.108",
	}, map[string]string{
		"198.51.100.100": "worker1", "198.51.100.101": "worker2", "198.51.100.102": "worker1",
		"198.51.100.103": "worker1", "198.51.100.104": "worker2", "198.51.100.105": "worker1",
		"198.51.100.106": "worker2", "198.51.100.107": "worker1",
	}))
	pod := func(labels ...string) Pod {
		p := Pod{Namespace: "ns", Name: "p", Node: "worker3", IP: netip.MustParseAddr("198.18.3.10"), Labels: map[string]string{}}
		for i := 0; i+1 < len(labels); i += 2 {
			p.Labels[labels[i]] = labels[i+1]
		}
		return p
	}
	ns := func(k, v string) map[string]string { return map[string]string{k: v} }
	tests := []struct {
		name     string
		pod      Pod
		ns       map[string]string
		dst      string
		want     Verdict
		policy   string
		egressIP string
		overlaps []string
		path     Path // checked if set
	}{
		{name: "spec: alice's frontend to 8.8.8.8 leaves with the gateway's first IP", pod: pod("role", "frontend"), ns: ns("user", "alice"), dst: "8.8.8.8", want: SNAT, policy: "egress", egressIP: "198.51.100.100"},
		{name: "spec: paul's frontend too", pod: pod("role", "frontend"), ns: ns("user", "paul"), dst: "8.8.8.200", want: SNAT, policy: "egress", egressIP: "198.51.100.100"},
		{name: "spec: a pod without role=frontend is masqueraded", pod: pod("role", "backend"), ns: ns("user", "alice"), dst: "8.8.8.8", want: Masquerade},
		{name: "spec: the frontend pod to 1.1.1.1 is masqueraded", pod: pod("role", "frontend"), ns: ns("user", "alice"), dst: "1.1.1.1", want: Masquerade},
		{name: "a selector pair must match both namespace and pod", pod: pod("role", "frontend"), ns: ns("user", "bob"), dst: "8.8.8.8", want: Masquerade},
		{name: "an absent podSelector selects every pod of the namespace", pod: pod(), ns: ns("team", "wide"), dst: "8.8.4.4", want: SNAT, policy: "wide", egressIP: "198.51.100.101"},
		{name: "the longest prefix wins even over an older policy", pod: pod("tier", "db"), ns: ns("team", "wide"), dst: "203.0.113.10", want: SNAT, policy: "narrow", egressIP: "198.51.100.102", overlaps: []string{"wide"}},
		{name: "in-cluster destinations are never steered, even under 0.0.0.0/0", pod: pod(), ns: ns("team", "wide"), dst: "198.18.1.10", want: InCluster},
		{name: "a policy prefix inside the cluster is ignored", pod: pod(), ns: ns("team", "wide"), dst: "10.96.0.10", want: InCluster},
		{name: "equal prefixes: the older policy wins", pod: pod(), ns: ns("team", "tie"), dst: "203.0.113.200", want: SNAT, policy: "same-older", egressIP: "198.51.100.103", overlaps: []string{"same-newer"}},
		{name: "equal prefixes and age: the first name wins", pod: pod(), ns: ns("team", "name"), dst: "1.1.1.1", want: SNAT, policy: "a-same-age", egressIP: "198.51.100.105", overlaps: []string{"b-same-age"}},
		{name: "a policy whose gateway is missing drops, never leaks", pod: pod(), ns: ns("team", "orphan"), dst: "9.9.9.9", want: Drop, policy: "orphan"},
		{name: "a policy whose egress IP no node holds drops", pod: pod(), ns: ns("team", "unheld"), dst: "9.9.9.9", want: Drop, policy: "unheld"},
		{name: "a policy with a bad selector selects nothing", pod: pod(), ns: ns("oops", "x"), dst: "9.9.9.9", want: Masquerade},
		{name: "host-network pods are never steered", pod: func() Pod { p := pod(); p.HostNetwork = true; return p }(), ns: ns("team", "wide"), dst: "8.8.8.8", want: Masquerade},
		{name: "IPv6 is untouched", pod: pod(), ns: ns("team", "wide"), dst: "2001:db8::1", want: Masquerade},
		{name: "a node on the egress IP's segment steers", pod: routedNode(onNode(pod("role", "frontend"), "198.51.100.0/25")), ns: ns("user", "alice"), dst: "8.8.8.8", want: SNAT, policy: "egress", egressIP: "198.51.100.100", path: OnSegmentPath},
		{name: "a node on another segment with a router: routed", pod: routedNode(onNode(pod("role", "frontend"), "198.51.100.128/25")), ns: ns("user", "alice"), dst: "8.8.8.8", want: SNAT, policy: "egress", egressIP: "198.51.100.100", path: RoutedPath},
		{name: "a node on another segment without a router drops, never leaks", pod: onNode(pod("role", "frontend"), "198.51.100.128/25"), ns: ns("user", "alice"), dst: "8.8.8.8", want: Drop, policy: "egress", egressIP: "198.51.100.100", path: NoPath},
		{name: "a node that reported no subnet yet: nothing claimed", pod: onNode(pod("role", "frontend")), ns: ns("user", "alice"), dst: "8.8.8.8", want: SNAT, policy: "egress", egressIP: "198.51.100.100"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := ps.Decide(tt.pod, tt.ns, cluster, netip.MustParseAddr(tt.dst))
			if d.Verdict != tt.want {
				t.Fatalf("verdict %s (%s), want %s", d.Verdict, d.Reason, tt.want)
			}
			var policy string
			if d.Policy != nil {
				policy = d.Policy.Name
			}
			var egressIP string
			if d.EgressIP.IsValid() {
				egressIP = d.EgressIP.String()
			}
			var overlaps []string
			for _, p := range d.Overlaps {
				overlaps = append(overlaps, p.Name)
			}
			got := []any{policy, egressIP, overlaps}
			if diff := cmp.Diff([]any{tt.policy, tt.egressIP, tt.overlaps}, got); diff != "" {
				t.Errorf("policy, egress IP, overlaps (-want +got):\n%s\nreason: %s", diff, d.Reason)
			}
			if d.Reason == "" {
				t.Error("no reason given")
			}
			if tt.path != "" && d.Path != tt.path {
				t.Errorf("path %s, want %s (%s)", d.Path, tt.path, d.Reason)
			}
		})
	}
}

// onNode gives p a node whose agent reports the interface subnets given.
func onNode(p Pod, subnets ...string) Pod {
	for _, s := range subnets {
		p.NodeReach.Subnets = append(p.NodeReach.Subnets, netip.MustParsePrefix(s))
	}
	return p
}

// routedNode gives p's node a router.
func routedNode(p Pod) Pod {
	p.NodeReach.Routed = true
	return p
}

func TestPathTo(t *testing.T) {
	ip := netip.MustParseAddr("198.51.100.100")
	tests := []struct {
		name    string
		reach   NodeReach
		want    Path
		wantWhy string // in NoRoute's words, for NoPath
	}{
		{name: "not reported: nothing claimed", want: OnSegmentPath},
		{name: "on the segment", reach: NodeReach{Subnets: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/25")}}, want: OnSegmentPath},
		{name: "on one of two", reach: NodeReach{Subnets: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24"), netip.MustParsePrefix("198.51.100.0/24")}, Routed: true}, want: OnSegmentPath},
		{name: "another segment, with a router", reach: NodeReach{Subnets: []netip.Prefix{netip.MustParsePrefix("198.51.100.128/25")}, Routed: true}, want: RoutedPath},
		{name: "another segment, no router", reach: NodeReach{Subnets: []netip.Prefix{netip.MustParsePrefix("198.51.100.128/25")}}, want: NoPath,
			wantWhy: "node n1 has no interface on a subnet of the egress IP 198.51.100.100 (its agent reports 198.51.100.128/25) and no route to it"},
		{name: "no subnet reported: nothing claimed", reach: NodeReach{Subnets: []netip.Prefix{}}, want: OnSegmentPath},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.reach.PathTo(ip); got != tt.want {
				t.Errorf("PathTo = %s, want %s", got, tt.want)
			}
			if tt.want == NoPath {
				if got := NoRoute("n1", tt.reach.Subnets, ip); !strings.Contains(got, tt.wantWhy) {
					t.Errorf("NoRoute = %q, want one with %q", got, tt.wantWhy)
				}
			}
		})
	}
}

func TestCompileOrder(t *testing.T) {
	ps := Compile([]*v1.EgressNATPolicy{
		policy("b", 1, nil), policy("c", 5, nil), policy("a", 1, nil),
	}, resolver(nil, nil))
	var got []string
	for _, p := range ps.Items() {
		got = append(got, p.Name)
	}
	if diff := cmp.Diff([]string{"c", "a", "b"}, got); diff != "" {
		t.Errorf("precedence order (-want +got):\n%s", diff)
	}
	if bad := Compile([]*v1.EgressNATPolicy{policy("x", 1, nil, [2]string{"oops", ""})}, resolver(nil, nil)).Items()[0]; bad.Invalid == "" {
		t.Error("a policy with a bad selector is not marked invalid")
	}
}
