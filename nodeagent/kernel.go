package nodeagent

import (
	"net/netip"
	"time"

	"github.com/egressgw/egressgw/apiserver/routing"
	"github.com/egressgw/egressgw/bpf"
	"github.com/egressgw/egressgw/nodeagent/floatingip"
)

// The kernel, behind the narrow interfaces the agent's parts need: each part takes only
// its own (the grant keeper grantMaps and addressHolder, the attacher attachments,
// hostRouting and interfaceLister). The real implementations are package bpf, package
// floatingip and host_linux.go; the unit tests use the fakes of fakes_test.go.

// kernel is what an agent programs, and the clock its expiries are on.
type kernel struct {
	dp   dataplane
	fips floatingIPs
	host host
	// now reads the monotonic clock that the dataplane's grant expiries are on.
	now func() time.Duration
}

// dataplane is the BPF side: maps and program attachments.
type dataplane interface {
	policyMaps
	snatFilter
	grantMaps
	attachments
	// Stats are packet counts per verdict.
	Stats() (map[string]uint64, error)
}

var _ dataplane = (*bpf.Dataplane)(nil)

// policyMaps say which egress IP each local pod's packets to each destination leave with.
type policyMaps interface {
	// Sync makes the maps hold exactly the table, without a moment in which a packet is
	// steered to another policy's egress IP.
	Sync(routing.Table) error
	// Numbering is the set id of each pod and the IP of each egress id in the maps now.
	Numbering() (map[netip.Addr]uint32, map[uint32]netip.Addr, error)
}

// snatFilter says what this node, as a gateway, may SNAT: a steered frame whose source is
// in the cluster's pod CIDRs, to a destination that a policy routes to the frame's egress
// IP. Any host on the node segment can address a frame to an egress IP's virtual MAC; all
// else it sends is dropped.
type snatFilter interface {
	// SetPodCIDRs makes the dataplane accept exactly these sources.
	SetPodCIDRs([]netip.Prefix) error
	// SetSNATDestinations makes it accept exactly these destinations per egress IP.
	SetSNATDestinations(map[netip.Addr][]netip.Prefix) error
	// SetNodes makes it take routed (IPv4-in-IPv4) packets from exactly these outer
	// sources: the nodes' addresses.
	SetNodes([]netip.Addr) error
}

// grantMaps say which egress IPs this node may SNAT steered packets to, and until when.
type grantMaps interface {
	// SetGrant lets the dataplane SNAT to ip until expires (monotonic clock).
	SetGrant(ip netip.Addr, snatID uint32, expires time.Duration) error
	DeleteGrant(ip netip.Addr) error
	Grants() (map[netip.Addr]uint32, error)
}

// attachments are the programs on the pods' veths and on the uplinks.
type attachments interface {
	// AttachPod lets the pod's veth send from sources only, the pod's own IPs, and
	// classifies what it sends.
	AttachPod(ifindex int, sources []netip.Addr) error
	// DetachPod takes the classifier off the veth, and then its sources.
	DetachPod(ifindex int) error
	AttachedPods() ([]int, error)
	// ForeignPrograms are the programs other than egressgw's on the ingress of a pod's
	// interface; moved says egw_from_pod was put first again.
	ForeignPrograms(ifindex int) (foreign []bpf.ForeignProgram, moved bool, err error)
	// AttachUplink lets steered packets leave the interface for their egress IP's
	// virtual MAC, takes in those steered to the IPs this node holds, and stops it
	// sending ARP for IPs whose grant has lapsed.
	AttachUplink(ifindex int) error
	// SetUplinks says which uplink reaches each egress IP on its subnet; steered packets
	// to any other IP go the routed way, or are dropped.
	SetUplinks(map[netip.Addr]bpf.Uplink) error
	// SetRouted says how the node reaches each egress IP on none of its subnets, through
	// routers; steered packets to an IP in neither are dropped.
	SetRouted(map[netip.Addr]bpf.Routed) error
}

// floatingIPs puts floating IPs on the interface whose subnet contains them.
type floatingIPs interface {
	addressHolder
	interfaceLister
}

var _ floatingIPs = (*floatingip.Holder)(nil)

// addressHolder holds the node's floating IPs.
type addressHolder interface {
	// Reconcile makes the node hold exactly want, each with a kernel lifetime as a
	// backstop, announcing new ones with gratuitous ARP.
	Reconcile(want map[netip.Addr]time.Duration) error
}

// interfaceLister lists the interfaces that can hold floating IPs.
type interfaceLister interface {
	Interfaces() ([]Interface, error)
}

// Interface is a node interface as the NetworkGatewayNode reports it.
type Interface = floatingip.Interface

// host is the rest of the node's network: the routing rule and table, the nft table,
// finding a pod's veth, and conntrack.
type host interface {
	hostRouting
	nftApplier
	conntrackCleaner
	// SNATConnections counts conntrack entries SNATed to each egress IP.
	SNATConnections() (map[netip.Addr]int, error)
}

// hostRouting is the node's routing as the attacher needs it.
type hostRouting interface {
	// EnsureSteering routes steered packets out of uplink, one of uplinks, the
	// interfaces that can hold floating IPs.
	EnsureSteering(uplink int, uplinks []int) error
	// RouteTo is the node's route to ip (its interface and source address); false if
	// it has none.
	RouteTo(ip netip.Addr) (bpf.Routed, bool)
	// PodLink finds the interface the node routes the pod IP through.
	PodLink(ip netip.Addr) (int, bool)
	// Uplink is the index and MAC of the interface of that name.
	Uplink(name string) (bpf.Uplink, error)
}

// nftApplier writes the agent's nft table.
type nftApplier interface {
	// ApplyNftables replaces the agent's nft table in one transaction.
	ApplyNftables(n nftState) error
	// ListNftables is the kernel's listing of the agent's table, without counters; empty
	// if the table is gone.
	ListNftables() (string, error)
}

// nftState is what the agent's nft table is built from.
type nftState struct {
	PodCIDRs     []netip.Prefix
	Cluster      []netip.Prefix
	Destinations []netip.Prefix
	// SNAT maps a snat id to the egress IP the gateway SNATs to.
	SNAT map[uint32]netip.Addr
}
