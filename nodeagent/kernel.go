package nodeagent

import (
	"net/netip"
	"time"

	"github.com/egressgw/egressgw/apiserver/routing"
	"github.com/egressgw/egressgw/bpf"
	"github.com/egressgw/egressgw/nodeagent/floatingip"
)

// The kernel, behind the narrow interfaces the agent needs. The real implementations are
// the bpf and floatingip packages and kernel_linux.go; tests use fakes.

// dataplane is the BPF side: maps and program attachments.
type dataplane interface {
	// Sync makes the maps hold exactly the table, without a moment in which a packet is
	// steered to another policy's egress IP.
	Sync(routing.Table) error
	// SetGrant lets the dataplane SNAT to ip until expires (monotonic clock).
	SetGrant(ip netip.Addr, snatID uint32, expires time.Duration) error
	DeleteGrant(ip netip.Addr) error
	Grants() (map[netip.Addr]uint32, error)
	// Numbering is the set id of each pod and the IP of each egress id in the maps now.
	Numbering() (map[netip.Addr]uint32, map[uint32]netip.Addr, error)
	AttachPod(ifindex int) error
	DetachPod(ifindex int) error
	AttachedPods() ([]int, error)
	// AttachUplink lets steered packets leave the interface for their egress IP's
	// virtual MAC, takes in those steered to the IPs this node holds, and stops it
	// sending ARP for IPs whose grant has lapsed.
	AttachUplink(ifindex int) error
	// SetUplinks says which uplink reaches each egress IP on its subnet; steered packets
	// to any other IP are dropped.
	SetUplinks(map[netip.Addr]bpf.Uplink) error
	// Stats are packet counts per verdict.
	Stats() (map[string]uint64, error)
}

// floatingIPs puts floating IPs on the interface whose subnet contains them.
type floatingIPs interface {
	// Reconcile makes the node hold exactly want, each with a kernel lifetime as a
	// backstop, announcing new ones with gratuitous ARP.
	Reconcile(want map[netip.Addr]time.Duration) error
	Interfaces() ([]Interface, error)
}

// Interface is a node interface as the NetworkGatewayNode reports it.
type Interface = floatingip.Interface

// host is the rest of the node's network: the routing rule and table, the nft table, and
// finding a pod's veth.
type host interface {
	// EnsureSteering routes steered packets out of uplink, one of uplinks, the
	// interfaces that can hold floating IPs.
	EnsureSteering(uplink int, uplinks []int) error
	// ApplyNftables replaces the agent's nft table in one transaction.
	ApplyNftables(n nftState) error
	// PodLink finds the interface the node routes the pod IP through.
	PodLink(ip netip.Addr) (int, bool)
	// SNATConnections counts conntrack entries SNATed to each egress IP.
	SNATConnections() (map[netip.Addr]int, error)
}

// nftState is what the agent's nft table is built from.
type nftState struct {
	PodCIDRs     []netip.Prefix
	Cluster      []netip.Prefix
	Destinations []netip.Prefix
	// SNAT maps a snat id to the egress IP the gateway SNATs to.
	SNAT map[uint32]netip.Addr
}
