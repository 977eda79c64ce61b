package routing

import (
	"net/netip"
)

// SNATDestinations are, for every egress IP, the destinations that some pod's packets are
// steered to it for: what the gateway holding the IP may SNAT, and all it may. Each is the
// SNAT routes of the ready policies with that egress IP, as Routes gives them (an
// in-cluster destination is never steered, so it is never SNATed either). Every policy's
// own routes count, not only those that win an overlap with another egress IP's policy:
// a pod that only the loser selects still steers there. Each list is sorted by prefix.
func (ps *Policies) SNATDestinations(cluster []netip.Prefix) map[netip.Addr][]netip.Prefix {
	byIP := map[netip.Addr][]*Policy{}
	for _, p := range ps.items {
		ip, err := netip.ParseAddr(p.Resolution.EgressIP)
		if !p.Resolution.Ready() || err != nil || !ip.Is4() {
			continue // its routes are Drop routes, which steer nothing
		}
		byIP[ip] = append(byIP[ip], p)
	}
	out := make(map[netip.Addr][]netip.Prefix, len(byIP))
	for ip, policies := range byIP {
		for _, r := range Routes(policies, cluster) {
			if r.Verdict == SNAT {
				out[ip] = append(out[ip], r.Prefix)
			}
		}
	}
	return out
}
