package placement

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"
)

// claims is who owns each floating IP, and the order IPs are placed in.
type claims struct {
	gateways  []Gateway          // unique by ID, oldest first
	order     []netip.Addr       // each listed IP once: by gateway age, then list position
	owner     map[netip.Addr]int // IP -> index in gateways of the gateway that keeps it
	conflicts []Conflict
}

// claimIPs gives each IP to the oldest gateway that lists it. Placing IPs in a fixed order
// (oldest gateway first, then as listed) is what makes the spec's example come out as
// written: .100 on worker1, .101 on worker2, .102 on worker1.
func claimIPs(gateways []Gateway) claims {
	sorted := slices.SortedFunc(slices.Values(gateways), compareGateways)
	c := claims{gateways: sorted[:0]}
	seen := make(map[GatewayID]bool, len(sorted))
	for _, g := range sorted {
		// The list is sorted and sorted[:0] shares its array, so this keeps the oldest entry
		// of each ID without overwriting one not yet read.
		if !seen[g.ID] {
			seen[g.ID] = true
			c.gateways = append(c.gateways, g)
		}
	}
	n := 0
	for _, g := range c.gateways {
		n += len(g.FloatingIPs)
	}
	c.order = make([]netip.Addr, 0, n)
	c.owner = make(map[netip.Addr]int, n)
	for gi, g := range c.gateways {
		for k, ip := range g.FloatingIPs {
			// A repeat within one gateway is the webhook's business, not a conflict. Lists
			// are short (the API allows 64), so a scan is cheaper than a set.
			if slices.Contains(g.FloatingIPs[:k], ip) {
				continue
			}
			if owner, taken := c.owner[ip]; taken {
				c.conflicts = append(c.conflicts, Conflict{IP: ip, Winner: c.gateways[owner].ID, Loser: g.ID})
				continue
			}
			c.owner[ip] = gi
			c.order = append(c.order, ip)
		}
	}
	// Stable, so the losers of one IP stay oldest first.
	slices.SortStableFunc(c.conflicts, func(a, b Conflict) int { return a.IP.Compare(b.IP) })
	return c
}

// compareGateways orders gateways oldest first. The tie-breakers after the creation time
// only make the order total, so that input order never matters.
func compareGateways(a, b Gateway) int {
	return cmp.Or(
		a.Created.Compare(b.Created),
		strings.Compare(a.ID.Namespace, b.ID.Namespace),
		strings.Compare(a.ID.Name, b.ID.Name),
		strings.Compare(a.ID.Kind, b.ID.Kind),
		slices.CompareFunc(a.FloatingIPs, b.FloatingIPs, netip.Addr.Compare),
	)
}
