package webhook

import (
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/webhook/validation"
)

// TestClusterCIDRs: the ranges admission checks floating IPs and destinations against are
// the flags', every Node's spec.podCIDRs and every reported subnet, kept current by
// informer events; a report of 0.0.0.0/0 is not believed.
func TestClusterCIDRs(t *testing.T) {
	services := validation.ClusterCIDR{Prefix: netip.MustParsePrefix("10.96.0.0/12"), Kind: validation.CIDRServices, Source: "--service-cidrs"}
	s := newSubnetSet([]validation.ClusterCIDR{services})
	nodes, reports := s.nodeHandler(), s.handler()
	nodes.OnAdd(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "worker1"}, Spec: corev1.NodeSpec{PodCIDRs: []string{"10.244.1.0/24", "fd00::/64"}}}, false)
	nodes.OnAdd(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "worker2"}, Spec: corev1.NodeSpec{PodCIDRs: []string{"10.244.2.0/24"}}}, false)
	reports.OnAdd(&v1.NetworkGatewayNode{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "worker1"},
		Status: v1.NetworkGatewayNodeStatus{Interfaces: []v1.NodeInterface{{Name: "eth0", Subnets: []string{"198.51.100.11/24", "0.0.0.0/0"}}}}}, false)
	nodes.OnDelete(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "worker2"}})

	want := []validation.ClusterCIDR{
		services,
		{Prefix: netip.MustParsePrefix("10.244.1.0/24"), Kind: validation.CIDRPods, Source: "Node worker1's spec.podCIDRs"},
		{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Kind: validation.CIDRNodes, Source: "node worker1's report"},
	}
	if got := s.ClusterCIDRs(); !slices.Equal(got, want) {
		t.Errorf("ClusterCIDRs() =\n %v\nwant\n %v", got, want)
	}
}
