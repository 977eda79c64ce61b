package nodeagent

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/apiserver/routing"
)

// coveredSnapshot is cluster's snapshot with pods in place of alice/fe, on a node whose
// InternalIP is nodeIP.
func coveredSnapshot(pods ...*corev1.Pod) snapshot {
	s := cluster(1, []netip.Addr{ip1})
	s.pods = pods
	s.addresses = routing.ClusterAddresses{Nodes: []routing.NodeAddresses{{InternalIPs: []netip.Addr{nodeIP}, PodCIDRs: s.podCIDRs}}}
	return s
}

func frontend(name, ip string) *corev1.Pod {
	return pod("alice", name, ip, map[string]string{"role": "frontend"})
}

// TestCoverage: the addresses of this node's pods outside its pod CIDRs go into the
// backstop, the sources a gateway SNATs and the report; a pod none of them can cover is
// named, with why.
func TestCoverage(t *testing.T) {
	hostNetwork := frontend("host", nodeIP.String())
	hostNetwork.Spec.HostNetwork = true
	pending := frontend("pending", "")
	pending.Status.Phase = corev1.PodPending
	dualStack := frontend("dual", "fd00::5")
	dualStack.Status.PodIPs = []corev1.PodIP{{IP: "fd00::5"}, {IP: "198.19.7.6"}}
	var many []*corev1.Pod
	for i := range maxServedAddresses + 2 {
		many = append(many, frontend(fmt.Sprintf("p%d", i), netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}).String()))
	}
	tests := []struct {
		name          string
		pods          []*corev1.Pod
		wantServed    int
		wantReported  []string // the first ones, if any
		wantUncovered []string // prefixes of the uncovered entries
	}{
		{name: "a pod in the node's pod CIDR", pods: []*corev1.Pod{frontend("fe", "198.18.1.10")}},
		{name: "a pod outside every pod CIDR", pods: []*corev1.Pod{frontend("fe", "198.19.7.5")},
			wantServed: 1, wantReported: []string{"198.19.7.5/32"}},
		{name: "an IPv4 address listed second", pods: []*corev1.Pod{dualStack},
			wantServed: 1, wantReported: []string{"198.19.7.6/32"}},
		{name: "a host-network pod", pods: []*corev1.Pod{hostNetwork}},
		{name: "a selected pod not running yet", pods: []*corev1.Pod{pending}},
		{name: "a running selected pod with no IPv4", pods: []*corev1.Pod{frontend("v6", "fd00::7")},
			wantUncovered: []string{"alice/v6: running and selected by a policy, with no IPv4 address"}},
		{name: "a pod with the node's address", pods: []*corev1.Pod{frontend("odd", nodeIP.String())},
			wantUncovered: []string{"alice/odd: its address is no pod's to a gateway (" + nodeIP.String() + "/32 contains the node address"}},
		{name: "more pods than the report lists", pods: many, wantServed: maxServedAddresses + 2, wantReported: []string{"198.19.0.0/32"},
			wantUncovered: []string{"alice/p1024: 198.19.4.0/32 is past the 1024 addresses", "alice/p1025: 198.19.4.1/32 is past"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := coveredSnapshot(tt.pods...)
			s.allPodCIDRs = s.podCIDRs
			d, err := s.desired(routing.NewTableBuilder())
			if err != nil {
				t.Fatal(err)
			}
			c := d.cover
			if len(c.served) != tt.wantServed || len(c.reported) != min(tt.wantServed, maxServedAddresses) {
				t.Errorf("served %d, reported %d; want %d and %d", len(c.served), len(c.reported), tt.wantServed, min(tt.wantServed, maxServedAddresses))
			}
			for i, want := range tt.wantReported {
				if c.reported[i].String() != want {
					t.Errorf("reported[%d] = %s, want %s", i, c.reported[i], want)
				}
			}
			for _, p := range c.served {
				if !slices.Contains(d.backstop, p) || !slices.Contains(d.podSources, p) {
					t.Errorf("%s: the backstop %v or the sources a gateway SNATs %v leave it out", p, d.backstop, d.podSources)
				}
			}
			if len(c.uncovered) != len(tt.wantUncovered) {
				t.Fatalf("uncovered %q, want %d", c.uncovered, len(tt.wantUncovered))
			}
			for i, want := range tt.wantUncovered {
				if !strings.HasPrefix(c.uncovered[i], want) {
					t.Errorf("uncovered[%d] = %q, want it to start %q", i, c.uncovered[i], want)
				}
			}
			if msg := c.message(); (msg == "") != (len(tt.wantUncovered) == 0) {
				t.Errorf("PodsCovered message %q with %d uncovered", msg, len(tt.wantUncovered))
			}
		})
	}
}

// TestPassCoversServedPods: a pass puts a pod outside the node's pod CIDRs into the nft
// backstop, the sources this node SNATs as a gateway and the report; a pod it cannot
// cover shows in the report and the gauge, until it is gone.
func TestPassCoversServedPods(t *testing.T) {
	r := newRig(t)
	served := netip.MustParsePrefix("198.19.7.5/32")
	s := coveredSnapshot(frontend("fe", "198.19.7.5"), frontend("v6", "fd00::7"))
	s.allPodCIDRs = s.podCIDRs
	r.pass(t, s)
	if !slices.Contains(r.host.nft.PodCIDRs, served) {
		t.Errorf("the nft backstop's pod_cidrs %v leave out %s", r.host.nft.PodCIDRs, served)
	}
	if !slices.Contains(r.dp.podCIDRs, served) {
		t.Errorf("a gateway here SNATs from %v, not from %s", r.dp.podCIDRs, served)
	}
	st := r.status.last
	if !slices.Equal(st.Served, []netip.Prefix{served}) || !strings.Contains(st.Uncovered, "alice/v6") {
		t.Errorf("reported served %v, uncovered %q; want [%s] and alice/v6", st.Served, st.Uncovered, served)
	}
	if got := testutil.ToFloat64(r.a.m.podsUncovered); got != 1 {
		t.Errorf("egressgw_agent_pods_uncovered = %v, want 1", got)
	}
	s.pods = s.pods[:1]
	r.pass(t, s)
	if st := r.status.last; st.Uncovered != "" || testutil.ToFloat64(r.a.m.podsUncovered) != 0 {
		t.Errorf("with alice/v6 gone: uncovered %q, gauge %v; want none", st.Uncovered, testutil.ToFloat64(r.a.m.podsUncovered))
	}
}

// TestSnapshotLearnsNodes: the never-steered set takes every node's InternalIP and
// reported subnets, and the sources a gateway SNATs take the served pod addresses other
// nodes report, but not this node's last report (its pods say) and not a deleted node's.
func TestSnapshotLearnsNodes(t *testing.T) {
	node := func(name, ip, podCIDR string) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:   corev1.NodeSpec{PodCIDR: podCIDR, PodCIDRs: []string{podCIDR}},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}}}
	}
	report := func(name string, subnets []string, served ...string) *v1.NetworkGatewayNode {
		return &v1.NetworkGatewayNode{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "kube-system"},
			Status: v1.NetworkGatewayNodeStatus{Interfaces: []v1.NodeInterface{{Name: "eth0", Subnets: subnets}}, ServedPodAddresses: served}}
	}
	c := listersOnly(t, scope{node: "node1", clusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12")}},
		node("node1", "198.51.100.11", "198.18.1.0/24"), node("node2", "198.51.100.12", "198.18.2.0/24"),
		report("node1", []string{"198.51.100.11/24"}, "198.19.1.1/32"),
		report("node2", []string{"198.51.100.12/24", "198.51.101.12/28", "0.0.0.0/0"}, "198.19.2.2/32", "0.0.0.0/0", "198.51.100.0/24"),
		report("gone", []string{"203.0.113.1/24"}, "198.19.9.9/32"))
	s, err := c.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	wantCluster := prefixList("10.96.0.0/12", "198.18.1.0/24", "198.18.2.0/24", "198.51.100.0/24", "198.51.100.11/32", "198.51.100.12/32", "198.51.101.0/28")
	if !slices.Equal(s.cluster, wantCluster) {
		t.Errorf("never steered: %v, want %v", s.cluster, wantCluster)
	}
	if want := prefixList("198.18.1.0/24", "198.18.2.0/24", "198.19.2.2/32"); !slices.Equal(s.allPodCIDRs, want) {
		t.Errorf("a gateway SNATs from %v, want %v", s.allPodCIDRs, want)
	}
}

func prefixList(raw ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(raw))
	for i, r := range raw {
		out[i] = netip.MustParsePrefix(r)
	}
	return out
}
