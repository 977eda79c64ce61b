package validation

import (
	"net/netip"

	"github.com/egressgw/egressgw/apiserver/apis/networking"
)

// Kinds of gateway objects. Floating IPs are unique across both.
const (
	KindNetworkGatewayGroup  = networking.KindNetworkGatewayGroup
	KindAnthosNetworkGateway = networking.KindAnthosNetworkGateway
)

// ObjectRef names an object in messages.
type ObjectRef = networking.ObjectRef

// Index answers what validation needs to know about other objects. Each method is a
// lookup in an index, not a scan.
type Index interface {
	// GatewaysWithFloatingIP returns the gateway objects of either kind whose spec lists ip.
	GatewaysWithFloatingIP(ip string) []ObjectRef
	// NetworkGatewayGroup returns the floating IPs of the NetworkGatewayGroup
	// namespace/name, and whether it exists.
	NetworkGatewayGroup(namespace, name string) (floatingIPs []string, found bool)
	// AnthosNetworkGatewayExists reports whether a legacy gateway namespace/name exists.
	AnthosNetworkGatewayExists(namespace, name string) bool
	// PoliciesWithEgressSourceIP returns the names of the policies whose egressSourceIP is ip.
	PoliciesWithEgressSourceIP(ip string) []string
	// PoliciesReferencing returns the names of the policies whose gatewayRef names the
	// NetworkGatewayGroup namespace/name.
	PoliciesReferencing(namespace, name string) []string
	// NodeWithAddress returns the node that has ip as one of its own addresses.
	NodeWithAddress(ip string) (node string, found bool)
	// RouterOf returns a node whose agent reports ip as a next hop of its routes: a
	// router on its segment.
	RouterOf(ip string) (node string, found bool)
	// NodeServingPod returns a node whose agent reports serving a pod at ip outside the
	// pod CIDRs (status.servedPodAddresses), as IPAMs that ignore Node.spec.podCIDRs do.
	NodeServingPod(ip string) (node string, found bool)
	// NodeSubnetContains reports whether a subnet of some node contains ip.
	NodeSubnetContains(ip netip.Addr) bool
	// NodeSubnetsContaining returns the node subnets (masked) that contain ip.
	NodeSubnetsContaining(ip netip.Addr) []netip.Prefix
	// ClusterCIDRs returns the cluster's own address ranges: its pod and service CIDRs as
	// configured, every Node's spec.podCIDRs, and the subnets node agents report.
	ClusterCIDRs() []ClusterCIDR
}

// ClusterCIDR is one of the cluster's own address ranges, and where admission learnt it.
type ClusterCIDR struct {
	Prefix netip.Prefix // masked
	Kind   CIDRKind
	// Source names where the range comes from, for messages: "--service-cidrs",
	// "Node worker1's spec.podCIDRs", "node worker1's report".
	Source string
}

// CIDRKind says what a cluster CIDR holds.
type CIDRKind string

const (
	CIDRPods     CIDRKind = "pod CIDR"
	CIDRServices CIDRKind = "service CIDR"
	CIDRNodes    CIDRKind = "node subnet"
)
