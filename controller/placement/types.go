package placement

import (
	"net/netip"
	"time"

	"github.com/egressgw/egressgw/apiserver/apis/networking"
)

// Kinds of gateway objects. Floating IPs are unique across both, so both are placed together.
const (
	KindNetworkGatewayGroup  = networking.KindNetworkGatewayGroup
	KindAnthosNetworkGateway = networking.KindAnthosNetworkGateway
)

// GatewayID names a gateway object of either kind.
type GatewayID = networking.ObjectRef

// Gateway is one gateway object's floating IPs.
type Gateway struct {
	ID GatewayID
	// Created is the creation timestamp. When two gateways list the same IP (which the
	// webhook should have refused), the older one keeps it.
	Created time.Time
	// FloatingIPs in the object's order, which is also the order they are placed in.
	// Anything but an IPv4 address is reported as unassigned.
	FloatingIPs []netip.Addr
}

// Node is one node as its agent reports it, plus what the Node object says about it.
type Node struct {
	Name string
	// Subnets of the node's interfaces, host bits allowed (192.168.1.11/24). Only IPv4
	// subnets count.
	Subnets []netip.Prefix
	// Addresses are the node's own addresses as its Node object gives them. They and the
	// host addresses of Subnets are never placed as floating IPs, on any node.
	Addresses []netip.Addr
	// Routers are the next hops the node's agent reports: in use on the segment, never
	// placed either.
	Routers      []netip.Addr
	ControlPlane bool
	// Up is false once the node's agent stops reporting.
	Up bool
	// Cordoned (unschedulable) nodes take no new IPs and hand theirs over when they can.
	Cordoned bool
}

// Input is everything placement looks at. Node names and gateway IDs should be unique; if
// one repeats, the node entries are merged cautiously (Up only if all say Up, cordoned or
// control-plane if any says so) and the older gateway entry is kept.
type Input struct {
	Gateways []Gateway
	Nodes    []Node
	// Current maps each floating IP to the node holding it now, as the last placement (or
	// the nodes' agents) said. It is what keeps IPs in place across controller restarts.
	Current map[netip.Addr]string
	// Standbys maps each floating IP to the standby the last placement named for it. An IP
	// that has to leave its node goes to its standby first, if the standby can take it, and
	// a standby that can still take its IP stays named: so a node that joins later changes
	// neither where an IP fails over to nor which node is getting ready for it.
	Standbys map[netip.Addr]string
}

// Result is where every floating IP should be.
type Result struct {
	// Assignment maps each placed IP to its node.
	Assignment map[netip.Addr]string
	// Unassigned maps each IP listed by a gateway that no node can take to why. Every
	// listed IP is in exactly one of Assignment and Unassigned.
	Unassigned map[netip.Addr]string
	// Conflicts lists the IPs listed by more than one gateway, sorted by IP, then by loser
	// age. The IP is placed once, for the winner.
	Conflicts []Conflict
	// Standbys maps each placed IP to its standby: the node Place would move it to if its
	// holder went Down and nothing else changed. It is never the holder.
	Standbys map[netip.Addr]string
	// NoStandby maps each placed IP that no other node could take to why. Every placed IP
	// is in exactly one of Standbys and NoStandby.
	NoStandby map[netip.Addr]string
	// Moves lists, sorted by IP, every IP of Current whose node changes, including IPs
	// that are now unassigned or no longer listed (To is empty). Acting on Moves alone
	// brings the nodes from Current to Assignment.
	Moves []Move
}

// Conflict is one IP listed by two gateways.
type Conflict struct {
	IP     netip.Addr
	Winner GatewayID // the older gateway, which keeps the IP
	Loser  GatewayID // the newer one, which does not get it
}

// Move is one IP leaving the node that held it.
type Move struct {
	IP       netip.Addr
	From, To string // To is empty when no node takes the IP
	Reason   MoveReason
}

// MoveReason says why an IP left its node.
type MoveReason string

const (
	MoveNodeDown     MoveReason = "NodeDown"     // the node's agent stopped reporting
	MoveNodeCordoned MoveReason = "NodeCordoned" // the node is unschedulable and another can take the IP
	MoveSubnetGone   MoveReason = "SubnetGone"   // no subnet of the node contains the IP any more
	MoveNodeGone     MoveReason = "NodeGone"     // the node is not in the input any more
	MoveIPRemoved    MoveReason = "IPRemoved"    // no gateway lists the IP any more
	MoveNodeAddress  MoveReason = "NodeAddress"  // the IP is some node's own address
	MoveRouter       MoveReason = "Router"       // the IP is a router some node routes through
)

// NodeState is a node's state as status.nodes shows it. The values are those of the API's
// NodeState, so the controller can convert without a table.
type NodeState string

const (
	NodeUp   NodeState = "Up"
	NodeDown NodeState = "Down"
)
