package routing

import (
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
)

// node1 is on 198.51.100.0/24 and a dedicated egress VLAN, with a Node pod CIDR, and
// serves two pods its IPAM placed elsewhere.
func node1() NodeAddresses {
	n := NodeAddressesOf(&corev1.Node{
		Spec: corev1.NodeSpec{PodCIDR: "198.18.1.0/24", PodCIDRs: []string{"198.18.1.0/24"}},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: "198.51.100.11"},
			{Type: corev1.NodeExternalIP, Address: "203.0.113.11"},
			{Type: corev1.NodeHostName, Address: "node1"},
		}},
	})
	r := ReportAddressesOf(&v1.NetworkGatewayNodeStatus{
		Interfaces: []v1.NodeInterface{
			{Name: "eth0", Subnets: []string{"198.51.100.11/24"}},
			{Name: "eth1", Subnets: []string{"198.51.101.11/25", "0.0.0.0/0", "fd00::1/64"}},
		},
		ServedPodAddresses: []string{"198.19.7.5/32", "198.19.8.9/32"},
	})
	n.Interfaces, n.Served = r.Interfaces, r.Served
	return n
}

// TestNeverSteered: the node subnets need not be configured: every node's InternalIP and
// reported subnets are in-cluster, but no subnet shorter than /8, and no pod address a node
// reports serving (a compromised node must not turn a policy's destination off).
func TestNeverSteered(t *testing.T) {
	got := ClusterAddresses{Configured: prefixes("10.96.0.0/12"), Nodes: []NodeAddresses{node1()}}.NeverSteered()
	want := prefixes("10.96.0.0/12", "198.18.1.0/24", "198.51.100.0/24", "198.51.100.11/32", "198.51.101.0/25")
	if !slices.Equal(got, want) {
		t.Errorf("NeverSteered() = %v, want %v", got, want)
	}
}

// TestPodSources: a gateway SNATs from every node's pod CIDRs and the served pod addresses
// nodes report, but not from a report that would open the relay to more than pods.
func TestPodSources(t *testing.T) {
	tests := []struct {
		name   string
		served []string
		want   []netip.Prefix
	}{
		{name: "served pods outside the Node's pod CIDR", served: []string{"198.19.7.5/32", "198.19.8.9/32"},
			want: prefixes("198.18.1.0/24", "198.19.7.5/32", "198.19.8.9/32")},
		{name: "a /16 block", served: []string{"198.19.0.0/16"}, want: prefixes("198.18.1.0/24", "198.19.0.0/16")},
		{name: "the whole internet", served: []string{"0.0.0.0/0", "203.0.0.0/15"}, want: prefixes("198.18.1.0/24")},
		{name: "a node's InternalIP", served: []string{"198.51.100.11/32"}, want: prefixes("198.18.1.0/24")},
		{name: "a subnet around a node's interface", served: []string{"198.51.101.0/24"}, want: prefixes("198.18.1.0/24")},
		{name: "the service CIDR", served: []string{"10.96.0.0/16", "10.97.0.9/32"}, want: prefixes("10.97.0.9/32", "198.18.1.0/24")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			other := ReportAddressesOf(&v1.NetworkGatewayNodeStatus{ServedPodAddresses: tc.served})
			n := node1()
			n.Served = nil
			c := ClusterAddresses{Configured: prefixes("10.96.0.0/16"), Nodes: []NodeAddresses{n, other}}
			if got := c.PodSources(); !slices.Equal(got, tc.want) {
				t.Errorf("PodSources() = %v, want %v", got, tc.want)
			}
		})
	}
}
