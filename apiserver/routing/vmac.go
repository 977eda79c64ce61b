package routing

import (
	"net"
	"net/netip"
)

// VirtualMAC is the MAC address of a floating IP on the node network: 02:65 and the
// IP's four bytes (locally administered, unicast). Whichever node holds the IP answers
// ARP for it with this MAC, and source nodes address steered packets to it, so the
// destination MAC tells the gateway which egress IP a packet was steered to, and a
// failover changes no neighbour's ARP entry, only which switch port has the MAC.
// bpf/egw.h (egw_vmac) computes the same.
func VirtualMAC(ip netip.Addr) net.HardwareAddr {
	b := ip.As4()
	return net.HardwareAddr{0x02, 0x65, b[0], b[1], b[2], b[3]}
}
