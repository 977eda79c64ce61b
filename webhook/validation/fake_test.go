package validation

import (
	"net/netip"
	"slices"
)

// fakeIndex is a hand-written Index over a few objects.
type fakeIndex struct {
	groups   map[string][]string // namespace/name -> floating IPs (NetworkGatewayGroup)
	legacy   map[string][]string // namespace/name -> floating IPs (AnthosNetworkGateway)
	policies map[string]policyEntry
	nodes    map[string]string // address -> node
	routers  map[string]string // router address -> a node that routes through it
	served   map[string]string // pod address outside the pod CIDRs -> the node serving it
	subnets  []netip.Prefix
	cluster  []ClusterCIDR
}

type policyEntry struct {
	gatewayRef     string // namespace/name
	egressSourceIP string
}

func (f *fakeIndex) GatewaysWithFloatingIP(ip string) []ObjectRef {
	var refs []ObjectRef
	for kind, m := range map[string]map[string][]string{KindNetworkGatewayGroup: f.groups, KindAnthosNetworkGateway: f.legacy} {
		for key, ips := range m {
			if slices.Contains(ips, ip) {
				ns, name := split(key)
				refs = append(refs, ObjectRef{Kind: kind, Namespace: ns, Name: name})
			}
		}
	}
	slices.SortFunc(refs, func(a, b ObjectRef) int { return compareRefs(a, b) })
	return refs
}

func (f *fakeIndex) NetworkGatewayGroup(namespace, name string) ([]string, bool) {
	ips, ok := f.groups[namespace+"/"+name]
	return ips, ok
}

func (f *fakeIndex) AnthosNetworkGatewayExists(namespace, name string) bool {
	_, ok := f.legacy[namespace+"/"+name]
	return ok
}

func (f *fakeIndex) PoliciesWithEgressSourceIP(ip string) []string {
	var names []string
	for name, p := range f.policies {
		if p.egressSourceIP == ip {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

func (f *fakeIndex) PoliciesReferencing(namespace, name string) []string {
	var names []string
	for policy, p := range f.policies {
		if p.gatewayRef == namespace+"/"+name {
			names = append(names, policy)
		}
	}
	slices.Sort(names)
	return names
}

func (f *fakeIndex) NodeWithAddress(ip string) (string, bool) {
	node, ok := f.nodes[ip]
	return node, ok
}

func (f *fakeIndex) RouterOf(ip string) (string, bool) {
	node, ok := f.routers[ip]
	return node, ok
}

func (f *fakeIndex) NodeServingPod(ip string) (string, bool) {
	node, ok := f.served[ip]
	return node, ok
}

func (f *fakeIndex) NodeSubnetsContaining(ip netip.Addr) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range f.subnets {
		if p.Contains(ip) {
			out = append(out, p.Masked())
		}
	}
	return out
}

func (f *fakeIndex) NodeSubnetContains(ip netip.Addr) bool {
	return slices.ContainsFunc(f.subnets, func(p netip.Prefix) bool { return p.Contains(ip) })
}

func (f *fakeIndex) ClusterCIDRs() []ClusterCIDR { return f.cluster }

func split(key string) (string, string) {
	for i := range key {
		if key[i] == '/' {
			return key[:i], key[i+1:]
		}
	}
	return "", key
}

func compareRefs(a, b ObjectRef) int {
	for _, c := range [][2]string{{a.Kind, b.Kind}, {a.Namespace, b.Namespace}, {a.Name, b.Name}} {
		if c[0] != c[1] {
			if c[0] < c[1] {
				return -1
			}
			return 1
		}
	}
	return 0
}

// specCluster is the spec's multi-gateway example: gateway1/2/3 in kube-system with one IP
// each, policies egress1/2/3 referring to them, a legacy gateway and policy, and two workers
// in 192.168.1.0/24. Its pods are in 10.244.0.0/16 (worker1 has 10.244.1.0/24), its
// services in 10.96.0.0/12.
func specCluster() *fakeIndex {
	return &fakeIndex{
		groups: map[string][]string{
			"kube-system/gateway1": {"192.168.1.100"},
			"kube-system/gateway2": {"192.168.1.101"},
			"kube-system/gateway3": {"192.168.1.102"},
			"kube-system/empty":    {},
		},
		legacy: map[string][]string{"kube-system/legacy": {"192.168.1.110", "192.168.1.111"}},
		policies: map[string]policyEntry{
			"egress1": {gatewayRef: "kube-system/gateway1"},
			"egress2": {gatewayRef: "kube-system/gateway2"},
			"egress3": {gatewayRef: "kube-system/gateway3"},
			"old":     {egressSourceIP: "192.168.1.110"},
		},
		nodes:   map[string]string{"192.168.1.11": "worker1", "192.168.1.12": "worker2"},
		routers: map[string]string{"192.168.1.1": "worker1"},
		served:  map[string]string{"192.168.1.77": "worker2"},
		subnets: []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24")},
		cluster: []ClusterCIDR{
			{Prefix: netip.MustParsePrefix("10.244.0.0/16"), Kind: CIDRPods, Source: "--pod-cidrs"},
			{Prefix: netip.MustParsePrefix("10.244.1.0/24"), Kind: CIDRPods, Source: "Node worker1's spec.podCIDRs"},
			{Prefix: netip.MustParsePrefix("10.96.0.0/12"), Kind: CIDRServices, Source: "--service-cidrs"},
			{Prefix: netip.MustParsePrefix("192.168.1.0/24"), Kind: CIDRNodes, Source: "node worker1's report"},
		},
	}
}
