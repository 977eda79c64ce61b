package floatingip

import (
	"net"
	"net/netip"

	"github.com/mdlayher/arp"
)

// kernel is the little of netlink and AF_PACKET the Holder needs; kernel_linux.go is the
// real one, and the unit tests use a fake.
type kernel interface {
	Links() ([]link, error)
	// Addrs lists every IPv4 address of every interface.
	Addrs() ([]address, error)
	// Routers lists the next hops of the main table's IPv4 routes, by link index.
	Routers() (map[int][]netip.Addr, error)
	// AddAddr adds ip/32 with the label and a valid and preferred lifetime in seconds; it
	// fails if the address is there already.
	AddAddr(linkIndex int, ip netip.Addr, label string, lifetime uint32) error
	// RefreshAddr sets the lifetime of ip/32 (adding it, labelled, if it has just expired).
	RefreshAddr(linkIndex int, ip netip.Addr, label string, lifetime uint32) error
	// DelAddr removes ip/32, only if it carries the label.
	DelAddr(linkIndex int, ip netip.Addr, label string) error
	// OpenARP opens a socket that sends ARP frames out of the link.
	OpenARP(l link) (arpConn, error)
}

// arpConn sends ARP packets; *arp.Client is one.
type arpConn interface {
	WriteTo(p *arp.Packet, dst net.HardwareAddr) error
	Close() error
}

var _ arpConn = &arp.Client{}

// link is a network interface as far as floating IPs care.
type link struct {
	Index int
	Name  string
	// Kind is the netlink link type: "device", "veth", "bridge", "ipip", "vxlan", ...
	Kind string
	MAC  net.HardwareAddr
	// Up: administratively up, and not operationally down.
	Up       bool
	Loopback bool
	NoARP    bool
}

// address is one IPv4 address of an interface.
type address struct {
	LinkIndex int
	// Prefix is the address with its prefix length, not masked.
	Prefix netip.Prefix
	Label  string
	// PointToPoint: the address has a peer, and the prefix is the peer's.
	PointToPoint bool
}
