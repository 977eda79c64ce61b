// Package routingtest holds one table of clusters and what the routing decision must make
// of them: for each pod, the policy that selects it, its egress IP, its gateway node and
// the verdict of its packet; for each policy, its status. The controller (policy status),
// the node agent (dataplane tables) and the aggregated API (views) each feed these same
// objects through their own code in a test named TestAgreement, and must all answer as
// the table says: that is how the three callers of package routing are held to one answer.
package routingtest

import (
	"fmt"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egressgw/egressgw/apiserver/apis/networking"
	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/apiserver/apis/networking/v1alpha1"
	"github.com/egressgw/egressgw/apiserver/routing"
)

// Case is one cluster. Every node in it is Up, reports the subnet NodeSubnet on its
// interface eth0, and holds what the gateways' status places on it; a controller given
// this cluster keeps every placement the status shows.
type Case struct {
	Name       string
	Namespaces []*corev1.Namespace
	Nodes      []*corev1.Node
	// Reports are the nodes' NetworkGatewayNodes, with the subnets and the IPs held.
	Reports  []*v1.NetworkGatewayNode
	Pods     []*corev1.Pod
	Groups   []*v1.NetworkGatewayGroup
	Legacy   []*v1alpha1.AnthosNetworkGateway
	Policies []*v1.EgressNATPolicy
	// Destination is where every pod sends its packet.
	Destination netip.Addr
	// Pods is the answer for each pod, by namespace/name.
	Want map[string]Want
	// WantPolicies is each policy's status, by name.
	WantPolicies map[string]PolicyWant
}

// Want is what happens to a pod's packet to the case's destination.
type Want struct {
	// Policy selects the pod for the destination; empty if none does.
	Policy string
	// EgressIP and GatewayNode are the policy's; GatewayNode is empty when no node holds
	// the egress IP, and both are empty when the policy has none.
	EgressIP, GatewayNode string
	// Verdict is SNAT, Drop or Masquerade.
	Verdict routing.Verdict
}

// PolicyWant is a policy's status.
type PolicyWant struct {
	EgressIP, GatewayNode string
	Ready                 bool
	Reason                string
}

// NodeSubnet is the node segment of every case; floating IPs outside it can be held by
// no node.
var NodeSubnet = netip.MustParsePrefix("198.51.100.0/25")

// Epoch is the creation time of the oldest object; later ones are a minute apart.
var Epoch = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// Cases are the clusters every caller is tested with.
func Cases() []Case {
	dst := netip.MustParseAddr("203.0.113.10")
	return []Case{{
		Name:       "the spec's example",
		Namespaces: namespaces(), Nodes: nodes(), Reports: reports(map[string][]string{"node1": {"198.51.100.100"}, "node2": {"198.51.100.101"}}),
		Pods:        pods(),
		Groups:      []*v1.NetworkGatewayGroup{group("default", 0, placed{"198.51.100.100": "node1", "198.51.100.101": "node2"}, "198.51.100.100", "198.51.100.101")},
		Policies:    []*v1.EgressNATPolicy{policy("egress", 1, gatewayRef("default"), "", "alice", "paul")},
		Destination: dst,
		Want: map[string]Want{
			"alice/frontend": {Policy: "egress", EgressIP: "198.51.100.100", GatewayNode: "node1", Verdict: routing.SNAT},
			"paul/frontend":  {Policy: "egress", EgressIP: "198.51.100.100", GatewayNode: "node1", Verdict: routing.SNAT},
			"alice/backend":  {Verdict: routing.Masquerade},
			"bob/frontend":   {Verdict: routing.Masquerade},
		},
		WantPolicies: map[string]PolicyWant{"egress": {EgressIP: "198.51.100.100", GatewayNode: "node1", Ready: true, Reason: routing.ReasonReady}},
	}, {
		// The migration case: the legacy gateway is older, and its name is the
		// NetworkGatewayGroup's. A v1 gatewayRef means the NetworkGatewayGroup; a policy
		// written as v1alpha1 reaches the legacy gateway by its egressSourceIP.
		Name:       "a legacy gateway and a NetworkGatewayGroup share a namespace and name",
		Namespaces: namespaces(), Nodes: nodes(), Reports: reports(map[string][]string{"node1": {"198.51.100.100"}, "node3": {"198.51.100.110"}}),
		Pods:   pods(),
		Groups: []*v1.NetworkGatewayGroup{group("default", 1, placed{"198.51.100.100": "node1"}, "198.51.100.100")},
		Legacy: []*v1alpha1.AnthosNetworkGateway{legacy("default", 0, placed{"198.51.100.110": "node3"}, "198.51.100.110")},
		Policies: []*v1.EgressNATPolicy{
			policy("egress", 2, gatewayRef("default"), "", "alice"),
			policy("legacy", 3, nil, "198.51.100.110", "paul"),
		},
		Destination: dst,
		Want: map[string]Want{
			"alice/frontend": {Policy: "egress", EgressIP: "198.51.100.100", GatewayNode: "node1", Verdict: routing.SNAT},
			"paul/frontend":  {Policy: "legacy", EgressIP: "198.51.100.110", GatewayNode: "node3", Verdict: routing.SNAT},
			"alice/backend":  {Verdict: routing.Masquerade},
			"bob/frontend":   {Verdict: routing.Masquerade},
		},
		WantPolicies: map[string]PolicyWant{
			"egress": {EgressIP: "198.51.100.100", GatewayNode: "node1", Ready: true, Reason: routing.ReasonReady},
			"legacy": {EgressIP: "198.51.100.110", GatewayNode: "node3", Ready: true, Reason: routing.ReasonReady},
		},
	}, {
		Name:       "a gatewayRef that names only a legacy gateway",
		Namespaces: namespaces(), Nodes: nodes(), Reports: reports(map[string][]string{"node2": {"198.51.100.120"}}),
		Pods:        pods(),
		Legacy:      []*v1alpha1.AnthosNetworkGateway{legacy("old", 0, placed{"198.51.100.120": "node2"}, "198.51.100.120")},
		Policies:    []*v1.EgressNATPolicy{policy("egress", 1, gatewayRef("old"), "", "alice", "paul")},
		Destination: dst,
		Want: map[string]Want{
			"alice/frontend": {Policy: "egress", Verdict: routing.Drop},
			"paul/frontend":  {Policy: "egress", Verdict: routing.Drop},
			"alice/backend":  {Verdict: routing.Masquerade},
			"bob/frontend":   {Verdict: routing.Masquerade},
		},
		WantPolicies: map[string]PolicyWant{"egress": {Reason: routing.ReasonGatewayNotFound}},
	}, {
		Name:       "an egress IP no node can hold",
		Namespaces: namespaces(), Nodes: nodes(), Reports: reports(nil),
		Pods:        pods(),
		Groups:      []*v1.NetworkGatewayGroup{group("default", 0, nil, "198.51.100.200")},
		Policies:    []*v1.EgressNATPolicy{policy("egress", 1, gatewayRef("default"), "", "alice")},
		Destination: dst,
		Want: map[string]Want{
			"alice/frontend": {Policy: "egress", EgressIP: "198.51.100.200", Verdict: routing.Drop},
			"paul/frontend":  {Verdict: routing.Masquerade},
			"alice/backend":  {Verdict: routing.Masquerade},
			"bob/frontend":   {Verdict: routing.Masquerade},
		},
		WantPolicies: map[string]PolicyWant{"egress": {EgressIP: "198.51.100.200", Reason: routing.ReasonUnknownEgressIP}},
	}}
}

type placed map[string]string

func at(minutes int) metav1.Time {
	return metav1.NewTime(Epoch.Add(time.Duration(minutes) * time.Minute))
}

func namespaces() []*corev1.Namespace {
	var out []*corev1.Namespace
	for _, user := range []string{"alice", "paul", "bob"} {
		out = append(out, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: user, Labels: map[string]string{"user": user}}})
	}
	return out
}

func nodes() []*corev1.Node {
	var out []*corev1.Node
	for i, name := range []string{"node1", "node2", "node3"} {
		out = append(out, &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       corev1.NodeSpec{PodCIDR: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i + 1), 0}), 24).String()},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP,
				Address: netip.AddrFrom4([4]byte{198, 51, 100, byte(11 + i)}).String()}}},
		})
	}
	return out
}

func reports(held map[string][]string) []*v1.NetworkGatewayNode {
	var out []*v1.NetworkGatewayNode
	for i, name := range []string{"node1", "node2", "node3"} {
		out = append(out, &v1.NetworkGatewayNode{
			ObjectMeta: metav1.ObjectMeta{Namespace: networking.NodeNamespace, Name: name, Generation: 1},
			Spec:       v1.NetworkGatewayNodeSpec{FloatingIPs: held[name]},
			Status: v1.NetworkGatewayNodeStatus{ObservedGeneration: 1, FloatingIPs: held[name],
				Interfaces: []v1.NodeInterface{{Name: "eth0", MAC: fmt.Sprintf("02:00:00:00:00:%02x", i+1), Subnets: []string{NodeSubnet.String()}}}},
		})
	}
	return out
}

// pods are the spec's four: alice/frontend and bob/frontend on node1, paul/frontend on
// node2, alice/backend on node3.
func pods() []*corev1.Pod {
	pod := func(namespace, name, role, node, ip string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: map[string]string{"role": role}},
			Spec:       corev1.PodSpec{NodeName: node},
			Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}},
		}
	}
	return []*corev1.Pod{
		pod("alice", "frontend", "frontend", "node1", "198.18.1.10"),
		pod("bob", "frontend", "frontend", "node1", "198.18.1.11"),
		pod("paul", "frontend", "frontend", "node2", "198.18.2.10"),
		pod("alice", "backend", "backend", "node3", "198.18.3.10"),
	}
}

func group(name string, age int, status placed, ips ...string) *v1.NetworkGatewayGroup {
	return &v1.NetworkGatewayGroup{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: name, CreationTimestamp: at(age), Generation: 1, ResourceVersion: "1"},
		Spec:       v1.NetworkGatewayGroupSpec{FloatingIPs: ips},
		Status:     v1.NetworkGatewayGroupStatus{FloatingIPs: status},
	}
}

func legacy(name string, age int, status placed, ips ...string) *v1alpha1.AnthosNetworkGateway {
	return &v1alpha1.AnthosNetworkGateway{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: name, CreationTimestamp: at(age), Generation: 1, ResourceVersion: "1"},
		Spec:       v1.NetworkGatewayGroupSpec{FloatingIPs: ips},
		Status:     v1.NetworkGatewayGroupStatus{FloatingIPs: status},
	}
}

func gatewayRef(name string) *v1.GatewayReference {
	return &v1.GatewayReference{Namespace: "kube-system", Name: name}
}

// policy selects the role=frontend pods of the users' namespaces for 203.0.113.0/24.
func policy(name string, age int, ref *v1.GatewayReference, egressSourceIP string, users ...string) *v1.EgressNATPolicy {
	p := &v1.EgressNATPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: at(age), Generation: 1, ResourceVersion: "1"},
		Spec: v1.EgressNATPolicySpec{Action: v1.ActionSNAT, GatewayRef: ref, EgressSourceIP: egressSourceIP,
			Destinations: []v1.Destination{{CIDR: "203.0.113.0/24"}}},
	}
	for _, user := range users {
		p.Spec.Sources = append(p.Spec.Sources, v1.EgressSource{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"user": user}},
			PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"role": "frontend"}},
		})
	}
	return p
}
