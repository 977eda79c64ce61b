package validation

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/apiserver/apis/networking/v1alpha1"
)

// check compares what a validator said with what the test wants: each want string must
// appear in the errors (or warnings), and none may appear when none is wanted.
func check(t *testing.T, errs field.ErrorList, warnings []string, wantErrs, wantWarnings []string) {
	t.Helper()
	got := ""
	if len(errs) > 0 {
		got = errs.ToAggregate().Error()
	}
	if len(wantErrs) == 0 && got != "" {
		t.Errorf("unexpected errors: %s", got)
	}
	for _, w := range wantErrs {
		if !strings.Contains(got, w) {
			t.Errorf("errors do not say %q; got: %s", w, got)
		}
	}
	for _, e := range errs {
		if e.Field == "" {
			t.Errorf("error without a field path: %v", e)
		}
	}
	all := strings.Join(warnings, "\n")
	if len(wantWarnings) == 0 && all != "" {
		t.Errorf("unexpected warnings: %s", all)
	}
	for _, w := range wantWarnings {
		if !strings.Contains(all, w) {
			t.Errorf("warnings do not say %q; got: %s", w, all)
		}
	}
}

func gw(name string) ObjectRef {
	return ObjectRef{Kind: KindNetworkGatewayGroup, Namespace: "kube-system", Name: name}
}

func TestGateway(t *testing.T) {
	tests := []struct {
		name         string
		self         ObjectRef
		ips          []string
		old          []string // nil: a create
		wantErrs     []string
		wantWarnings []string
	}{{
		name: "a new gateway with fresh IPs in the node subnet",
		self: gw("gateway4"), ips: []string{"192.168.1.103", "192.168.1.104"},
	}, {
		name:     "an IP another NetworkGatewayGroup uses",
		self:     gw("gateway4"),
		ips:      []string{"192.168.1.103", "192.168.1.101"},
		wantErrs: []string{`spec.floatingIPs[1]: Duplicate value: "192.168.1.101": already used by NetworkGatewayGroup kube-system/gateway2`},
	}, {
		name:     "an IP a legacy AnthosNetworkGateway uses",
		self:     gw("gateway4"),
		ips:      []string{"192.168.1.111"},
		wantErrs: []string{`spec.floatingIPs[0]: Duplicate value: "192.168.1.111": already used by AnthosNetworkGateway kube-system/legacy`},
	}, {
		name:     "a legacy gateway taking an IP of a NetworkGatewayGroup",
		self:     ObjectRef{Kind: KindAnthosNetworkGateway, Namespace: "kube-system", Name: "legacy2"},
		ips:      []string{"192.168.1.100"},
		wantErrs: []string{`already used by NetworkGatewayGroup kube-system/gateway1`},
	}, {
		name:     "the same IP twice in one object",
		self:     gw("gateway4"),
		ips:      []string{"192.168.1.103", "192.168.1.103"},
		wantErrs: []string{`spec.floatingIPs[1]: Duplicate value: "192.168.1.103"`},
	}, {
		name:     "an IPv6 address",
		self:     gw("gateway4"),
		ips:      []string{"2001:db8::1"},
		wantErrs: []string{`spec.floatingIPs[0]: Invalid value: "2001:db8::1": must be an IPv4 address such as 192.168.1.100: the egress NAT gateway is IPv4-only`},
	}, {
		name:     "not an address",
		self:     gw("gateway4"),
		ips:      []string{"300.1.1.1"},
		wantErrs: []string{`spec.floatingIPs[0]: Invalid value: "300.1.1.1": must be an IPv4 address`},
	}, {
		name:     "a node's own address",
		self:     gw("gateway4"),
		ips:      []string{"192.168.1.12"},
		wantErrs: []string{`spec.floatingIPs[0]: Invalid value: "192.168.1.12": is the address of node worker2`},
	}, {
		name:         "an IP no node subnet contains is legal, with a warning",
		self:         gw("gateway4"),
		ips:          []string{"10.0.0.5"},
		wantWarnings: []string{"spec.floatingIPs[0]: no node has a subnet that contains 10.0.0.5"},
	}, {
		name: "updating a gateway keeps its own IPs without conflict",
		self: gw("gateway1"), ips: []string{"192.168.1.100", "192.168.1.105"}, old: []string{"192.168.1.100"},
	}, {
		name: "an update that keeps a conflicting IP it already had is not blocked",
		self: gw("gateway4"), ips: []string{"192.168.1.101", "192.168.1.105"}, old: []string{"192.168.1.101"},
	}, {
		name:         "changing the first IP names the policies that use it",
		self:         gw("gateway1"),
		ips:          []string{"192.168.1.105", "192.168.1.100"},
		old:          []string{"192.168.1.100"},
		wantWarnings: []string{"EgressNATPolicy egress1 uses the first floating IP of NetworkGatewayGroup kube-system/gateway1 as egress IP; it changes from 192.168.1.100 to 192.168.1.105"},
	}, {
		name:         "emptying a referenced gateway",
		self:         gw("gateway2"),
		ips:          []string{},
		old:          []string{"192.168.1.101"},
		wantWarnings: []string{"EgressNATPolicy egress2 uses the first floating IP of NetworkGatewayGroup kube-system/gateway2, which now has none"},
	}, {
		name:         "removing a legacy policy's egressSourceIP",
		self:         ObjectRef{Kind: KindAnthosNetworkGateway, Namespace: "kube-system", Name: "legacy"},
		ips:          []string{"192.168.1.111"},
		old:          []string{"192.168.1.110", "192.168.1.111"},
		wantWarnings: []string{"EgressNATPolicy old uses 192.168.1.110 as egressSourceIP"},
	}, {
		name:         "a NetworkGatewayGroup named as a legacy gateway says which one a gatewayRef means",
		self:         gw("legacy"),
		ips:          []string{"192.168.1.105"},
		wantWarnings: []string{"AnthosNetworkGateway kube-system/legacy has the same name: a v1 policy's gatewayRef kube-system/legacy means this NetworkGatewayGroup"},
	}, {
		name:         "a legacy gateway named as a NetworkGatewayGroup says a gatewayRef never means it",
		self:         ObjectRef{Kind: KindAnthosNetworkGateway, Namespace: "kube-system", Name: "gateway1"},
		ips:          []string{"192.168.1.106"},
		wantWarnings: []string{"NetworkGatewayGroup kube-system/gateway1 has the same name: a v1 policy's gatewayRef kube-system/gateway1 means the NetworkGatewayGroup, never this AnthosNetworkGateway"},
	}, {
		name: "updating a gateway of a shared name warns no more",
		self: gw("legacy"), ips: []string{"192.168.1.105", "192.168.1.106"}, old: []string{"192.168.1.105"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var old *v1.NetworkGatewayGroupSpec
			if tt.old != nil {
				old = &v1.NetworkGatewayGroupSpec{FloatingIPs: tt.old}
			}
			errs, warnings := Gateway(tt.self, &v1.NetworkGatewayGroupSpec{FloatingIPs: tt.ips}, old, specCluster())
			check(t, errs, warnings, tt.wantErrs, tt.wantWarnings)
		})
	}
}

func TestGatewayDelete(t *testing.T) {
	tests := []struct {
		name         string
		self         ObjectRef
		ips          []string
		wantWarnings []string
	}{{
		name:         "a gateway that policies refer to",
		self:         gw("gateway3"),
		ips:          []string{"192.168.1.102"},
		wantWarnings: []string{"EgressNATPolicy egress3 refers to NetworkGatewayGroup kube-system/gateway3; until it exists again, the traffic they select is dropped"},
	}, {
		name: "a gateway nobody uses",
		self: gw("empty"),
	}, {
		name:         "a legacy gateway whose IP a policy uses",
		self:         ObjectRef{Kind: KindAnthosNetworkGateway, Namespace: "kube-system", Name: "legacy"},
		ips:          []string{"192.168.1.110", "192.168.1.111"},
		wantWarnings: []string{"EgressNATPolicy old uses 192.168.1.110 as egressSourceIP"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			warnings := GatewayDelete(tt.self, &v1.NetworkGatewayGroupSpec{FloatingIPs: tt.ips}, specCluster())
			check(t, nil, warnings, nil, tt.wantWarnings)
		})
	}
}

func frontend(user string) v1.EgressSource {
	return v1.EgressSource{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"user": user}},
		PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"role": "frontend"}},
	}
}

func policy(mutate func(*v1.EgressNATPolicySpec)) *v1.EgressNATPolicy {
	p := &v1.EgressNATPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "egress"},
		Spec: v1.EgressNATPolicySpec{
			Sources:      []v1.EgressSource{frontend("alice"), frontend("paul")},
			Action:       v1.ActionSNAT,
			Destinations: []v1.Destination{{CIDR: "8.8.8.0/24"}},
			GatewayRef:   &v1.GatewayReference{Name: "gateway1", Namespace: "kube-system"},
		},
	}
	if mutate != nil {
		mutate(&p.Spec)
	}
	return p
}

func TestPolicy(t *testing.T) {
	tests := []struct {
		name         string
		policy       *v1.EgressNATPolicy
		old          *v1.EgressNATPolicy
		wantErrs     []string
		wantWarnings []string
	}{{
		name:   "the spec's policy",
		policy: policy(nil),
	}, {
		name:     "gatewayRef without a name",
		policy:   policy(func(s *v1.EgressNATPolicySpec) { s.GatewayRef.Name = "" }),
		wantErrs: []string{"spec.gatewayRef.name: Required value"},
	}, {
		name:     "gatewayRef without a namespace",
		policy:   policy(func(s *v1.EgressNATPolicySpec) { s.GatewayRef.Namespace = "" }),
		wantErrs: []string{"spec.gatewayRef.namespace: Required value: give the NetworkGatewayGroup's namespace"},
	}, {
		name:     "no gatewayRef",
		policy:   policy(func(s *v1.EgressNATPolicySpec) { s.GatewayRef = nil }),
		wantErrs: []string{"spec.gatewayRef: Required value: name the NetworkGatewayGroup whose first floating IP this policy uses"},
	}, {
		name:     "gatewayRef naming no gateway",
		policy:   policy(func(s *v1.EgressNATPolicySpec) { s.GatewayRef.Name = "nope" }),
		wantErrs: []string{`spec.gatewayRef: Not found: "kube-system/nope": no NetworkGatewayGroup kube-system/nope exists; create it first, or fix gatewayRef`},
	}, {
		name:     "gatewayRef naming a legacy gateway",
		policy:   policy(func(s *v1.EgressNATPolicySpec) { s.GatewayRef.Name = "legacy" }),
		wantErrs: []string{`only an AnthosNetworkGateway; a v1 policy refers to a NetworkGatewayGroup`},
	}, {
		name:     "gatewayRef naming a gateway without floating IPs",
		policy:   policy(func(s *v1.EgressNATPolicySpec) { s.GatewayRef.Name = "empty" }),
		wantErrs: []string{`spec.gatewayRef: Invalid value: "kube-system/empty": NetworkGatewayGroup kube-system/empty has no floating IPs`},
	}, {
		name:   "an update that keeps a gatewayRef whose gateway is gone is not blocked",
		policy: policy(func(s *v1.EgressNATPolicySpec) { s.GatewayRef.Name = "gone"; s.Sources = s.Sources[:1] }),
		old:    policy(func(s *v1.EgressNATPolicySpec) { s.GatewayRef.Name = "gone" }),
	}, {
		name:     "an update that points gatewayRef at nothing",
		policy:   policy(func(s *v1.EgressNATPolicySpec) { s.GatewayRef.Name = "gone" }),
		old:      policy(nil),
		wantErrs: []string{`no NetworkGatewayGroup kube-system/gone exists`},
	}, {
		name:     "no sources",
		policy:   policy(func(s *v1.EgressNATPolicySpec) { s.Sources = nil }),
		wantErrs: []string{"spec.sources: Required value: list at least one source"},
	}, {
		name:     "a source with neither selector",
		policy:   policy(func(s *v1.EgressNATPolicySpec) { s.Sources = []v1.EgressSource{{}} }),
		wantErrs: []string{"spec.sources[0]: Required value: set namespaceSelector, podSelector or both"},
	}, {
		name: "an invalid label selector",
		policy: policy(func(s *v1.EgressNATPolicySpec) {
			s.Sources[1].PodSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "role", Operator: "Like", Values: []string{"x"}}}}
		}),
		wantErrs: []string{`spec.sources[1].podSelector.matchExpressions[0].operator: Invalid value: "Like"`},
	}, {
		name: "a label value that is not a label value",
		policy: policy(func(s *v1.EgressNATPolicySpec) {
			s.Sources[0].NamespaceSelector.MatchLabels = map[string]string{"user": "al ice"}
		}),
		wantErrs: []string{`spec.sources[0].namespaceSelector.matchLabels: Invalid value: "al ice"`},
	}, {
		name:     "no destinations",
		policy:   policy(func(s *v1.EgressNATPolicySpec) { s.Destinations = nil }),
		wantErrs: []string{"spec.destinations: Required value: list at least one IPv4 CIDR"},
	}, {
		name:     "an IPv6 destination",
		policy:   policy(func(s *v1.EgressNATPolicySpec) { s.Destinations = []v1.Destination{{CIDR: "2001:db8::/32"}} }),
		wantErrs: []string{`spec.destinations[0].cidr: Invalid value: "2001:db8::/32": must be an IPv4 CIDR such as 8.8.8.0/24: the egress NAT gateway is IPv4-only`},
	}, {
		name:     "a malformed destination",
		policy:   policy(func(s *v1.EgressNATPolicySpec) { s.Destinations = []v1.Destination{{CIDR: "8.8.8.0/33"}} }),
		wantErrs: []string{`spec.destinations[0].cidr: Invalid value: "8.8.8.0/33"`},
	}, {
		name:         "host bits set: accepted, with the range it stands for",
		policy:       policy(func(s *v1.EgressNATPolicySpec) { s.Destinations = []v1.Destination{{CIDR: "8.8.8.8/24"}} }),
		wantWarnings: []string{"spec.destinations[0].cidr: 8.8.8.8/24 has host bits set; it selects 8.8.8.0/24"},
	}, {
		name: "the same range twice",
		policy: policy(func(s *v1.EgressNATPolicySpec) {
			s.Destinations = []v1.Destination{{CIDR: "8.8.8.0/24"}, {CIDR: "8.8.8.1/24"}}
		}),
		wantErrs:     []string{`spec.destinations[1].cidr: Duplicate value: "8.8.8.1/24": the same range as spec.destinations[0].cidr`},
		wantWarnings: []string{"has host bits set"},
	}, {
		name:     "action DNAT",
		policy:   policy(func(s *v1.EgressNATPolicySpec) { s.Action = "DNAT" }),
		wantErrs: []string{`spec.action: Unsupported value: "DNAT": supported values: "SNAT"`},
	}, {
		name:     "both gatewayRef and egressSourceIP",
		policy:   policy(func(s *v1.EgressNATPolicySpec) { s.EgressSourceIP = "192.168.1.111" }),
		wantErrs: []string{"spec.egressSourceIP: Forbidden: set gatewayRef or egressSourceIP, not both"},
	}, {
		name:   "a legacy policy stored as v1 with its own egressSourceIP",
		policy: policy(func(s *v1.EgressNATPolicySpec) { s.GatewayRef = nil; s.EgressSourceIP = "192.168.1.111" }),
	}, {
		name:     "a v1 egressSourceIP another policy uses",
		policy:   policy(func(s *v1.EgressNATPolicySpec) { s.GatewayRef = nil; s.EgressSourceIP = "192.168.1.110" }),
		wantErrs: []string{`spec.egressSourceIP: Duplicate value: "192.168.1.110": already used by EgressNATPolicy old`},
	}, {
		name: "the default route",
		policy: policy(func(s *v1.EgressNATPolicySpec) {
			s.Destinations = []v1.Destination{{CIDR: "8.8.8.0/24"}, {CIDR: "0.0.0.0/0"}}
		}),
		wantErrs: []string{`spec.destinations[1].cidr: Invalid value: "0.0.0.0/0": is the default route: it selects all of the pods' traffic, to the cluster's own pods, services and nodes included; list the outside ranges you mean, or set spec.allowClusterOverlap: true`},
	}, {
		name:     "a destination that covers the pod and service CIDRs",
		policy:   policy(func(s *v1.EgressNATPolicySpec) { s.Destinations = []v1.Destination{{CIDR: "10.0.0.0/8"}} }),
		wantErrs: []string{`spec.destinations[0].cidr: Invalid value: "10.0.0.0/8": covers the cluster's pod CIDR 10.244.0.0/16 (--pod-cidrs); traffic to the cluster's own addresses must not leave through a gateway: list only outside ranges, or set spec.allowClusterOverlap: true`},
	}, {
		name:     "a destination inside a node subnet",
		policy:   policy(func(s *v1.EgressNATPolicySpec) { s.Destinations = []v1.Destination{{CIDR: "192.168.1.128/25"}} }),
		wantErrs: []string{`spec.destinations[0].cidr: Invalid value: "192.168.1.128/25": is inside the cluster's node subnet 192.168.1.0/24 (node worker1's report)`, `spec.allowClusterOverlap: true`},
	}, {
		name: "the default route, opted in",
		policy: policy(func(s *v1.EgressNATPolicySpec) {
			s.Destinations, s.AllowClusterOverlap = []v1.Destination{{CIDR: "0.0.0.0/0"}}, true
		}),
	}, {
		name: "a destination covering the cluster, opted in",
		policy: policy(func(s *v1.EgressNATPolicySpec) {
			s.Destinations, s.AllowClusterOverlap = []v1.Destination{{CIDR: "10.0.0.0/8"}}, true
		}),
	}, {
		name: "an update that keeps a destination covering the cluster is not blocked",
		policy: policy(func(s *v1.EgressNATPolicySpec) {
			s.Destinations = []v1.Destination{{CIDR: "10.0.0.0/8"}}
			s.Sources = s.Sources[:1]
		}),
		old: policy(func(s *v1.EgressNATPolicySpec) { s.Destinations = []v1.Destination{{CIDR: "10.0.0.0/8"}} }),
	}, {
		name: "an update that adds a destination covering the cluster",
		policy: policy(func(s *v1.EgressNATPolicySpec) {
			s.Destinations = []v1.Destination{{CIDR: "8.8.8.0/24"}, {CIDR: "10.96.0.0/16"}}
		}),
		old:      policy(nil),
		wantErrs: []string{`spec.destinations[1].cidr: Invalid value: "10.96.0.0/16": is inside the cluster's service CIDR 10.96.0.0/12 (--service-cidrs)`},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs, warnings := Policy(tt.policy, tt.old, specCluster())
			check(t, errs, warnings, tt.wantErrs, tt.wantWarnings)
		})
	}
}

func legacyPolicy(name string, mutate func(*v1alpha1.EgressNATPolicySpec)) *v1alpha1.EgressNATPolicy {
	p := &v1alpha1.EgressNATPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.EgressNATPolicySpec{
			Egress:           []v1.EgressSource{frontend("alice"), frontend("paul")},
			DestinationCIDRs: []string{"8.8.8.0/24"},
			EgressSourceIP:   "192.168.1.111",
		},
	}
	if mutate != nil {
		mutate(&p.Spec)
	}
	return p
}

func TestLegacyPolicy(t *testing.T) {
	tests := []struct {
		name     string
		policy   *v1alpha1.EgressNATPolicy
		old      *v1alpha1.EgressNATPolicy
		wantErrs []string
	}{{
		name:   "the spec's legacy policy, on a free floating IP",
		policy: legacyPolicy("egress", nil),
	}, {
		name:     "an egressSourceIP that is no gateway's floating IP",
		policy:   legacyPolicy("egress", func(s *v1alpha1.EgressNATPolicySpec) { s.EgressSourceIP = "192.168.1.200" }),
		wantErrs: []string{`spec.egressSourceIP: Invalid value: "192.168.1.200": is not a floating IP of any AnthosNetworkGateway or NetworkGatewayGroup`},
	}, {
		name:     "an egressSourceIP another policy uses",
		policy:   legacyPolicy("egress", func(s *v1alpha1.EgressNATPolicySpec) { s.EgressSourceIP = "192.168.1.110" }),
		wantErrs: []string{`spec.egressSourceIP: Duplicate value: "192.168.1.110": already used by EgressNATPolicy old; every policy needs its own egressSourceIP`},
	}, {
		name:   "the policy that owns the egressSourceIP may be updated",
		policy: legacyPolicy("old", func(s *v1alpha1.EgressNATPolicySpec) { s.EgressSourceIP = "192.168.1.110" }),
		old:    legacyPolicy("old", func(s *v1alpha1.EgressNATPolicySpec) { s.EgressSourceIP = "192.168.1.110" }),
	}, {
		name:     "no egress rules",
		policy:   legacyPolicy("egress", func(s *v1alpha1.EgressNATPolicySpec) { s.Egress = nil }),
		wantErrs: []string{"spec.egress: Required value"},
	}, {
		name:     "no destinationCIDRs",
		policy:   legacyPolicy("egress", func(s *v1alpha1.EgressNATPolicySpec) { s.DestinationCIDRs = nil }),
		wantErrs: []string{"spec.destinationCIDRs: Required value"},
	}, {
		name:     "an IPv6 destination CIDR",
		policy:   legacyPolicy("egress", func(s *v1alpha1.EgressNATPolicySpec) { s.DestinationCIDRs = []string{"8.8.8.0/24", "::/0"} }),
		wantErrs: []string{`spec.destinationCIDRs[1]: Invalid value: "::/0": must be an IPv4 CIDR such as 8.8.8.0/24: the egress NAT gateway is IPv4-only`},
	}, {
		name:     "no egressSourceIP",
		policy:   legacyPolicy("egress", func(s *v1alpha1.EgressNATPolicySpec) { s.EgressSourceIP = "" }),
		wantErrs: []string{"spec.egressSourceIP: Required value"},
	}, {
		name:     "an IPv6 egressSourceIP",
		policy:   legacyPolicy("egress", func(s *v1alpha1.EgressNATPolicySpec) { s.EgressSourceIP = "2001:db8::1" }),
		wantErrs: []string{`spec.egressSourceIP: Invalid value: "2001:db8::1": must be an IPv4 address`},
	}, {
		name:     "the default route",
		policy:   legacyPolicy("egress", func(s *v1alpha1.EgressNATPolicySpec) { s.DestinationCIDRs = []string{"0.0.0.0/0"} }),
		wantErrs: []string{`spec.destinationCIDRs[0]: Invalid value: "0.0.0.0/0": is the default route`, `write the policy as networking.gke.io/v1 with spec.allowClusterOverlap: true`},
	}, {
		name: "the default route, opted in through conversion's annotation",
		policy: func() *v1alpha1.EgressNATPolicy {
			p := legacyPolicy("egress", func(s *v1alpha1.EgressNATPolicySpec) { s.DestinationCIDRs = []string{"0.0.0.0/0"} })
			p.Annotations = map[string]string{v1alpha1.V1FieldsAnnotation: `{"allowClusterOverlap":true}`}
			return p
		}(),
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs, warnings := LegacyPolicy(tt.policy, tt.old, specCluster())
			check(t, errs, warnings, tt.wantErrs, nil)
		})
	}
}
