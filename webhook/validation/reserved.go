package validation

import (
	"fmt"
	"net/netip"
)

// reservedRanges are addresses no node may announce as a floating IP: taking one would
// hijack a host-local or link-local service (169.254.88.2 among them), or announce an
// address that is not a unicast host on the segment.
var reservedRanges = []struct {
	prefix netip.Prefix
	what   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "in 0.0.0.0/8, which means this host"},
	{netip.MustParsePrefix("127.0.0.0/8"), "a loopback address"},
	{netip.MustParsePrefix("169.254.0.0/16"), "a link-local address (169.254.0.0/16), which host-local services use"},
	{netip.MustParsePrefix("224.0.0.0/4"), "a multicast address"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved (240.0.0.0/4) or the broadcast address"},
}

// floatingIPUnusable says why ip can never be a floating IP, or returns "". subnets are
// the node subnets that contain ip: a subnet's network and broadcast addresses are not
// host addresses.
func floatingIPUnusable(ip netip.Addr, subnets []netip.Prefix) string {
	for _, r := range reservedRanges {
		if r.prefix.Contains(ip) {
			return fmt.Sprintf("is %s; a floating IP must be an unused unicast address in the nodes' subnet", r.what)
		}
	}
	for _, s := range subnets {
		if s.Bits() >= 31 {
			continue // RFC 3021: both addresses of a /31 are hosts
		}
		if ip == s.Masked().Addr() {
			return fmt.Sprintf("is the network address of node subnet %s; pick an unused host address in it", s.Masked())
		}
		if ip == lastAddr(s) {
			return fmt.Sprintf("is the broadcast address of node subnet %s; pick an unused host address in it", s.Masked())
		}
	}
	return ""
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
