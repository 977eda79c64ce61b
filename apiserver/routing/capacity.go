package routing

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// CapacityError says that a map, or an id space, is full: the entries past Limit were
// refused (what they are meant for fails closed: a packet finds no entry and drops, or
// keeps the old table's verdict), while the entries already there stay. The node agent
// reports it as its NetworkGatewayNode's CapacityExceeded condition.
type CapacityError struct {
	// Map names the map or id space: egw_uplinks, "egress ids".
	Map string
	// Limit is how many entries it holds.
	Limit int
	// What the entries are: "egress IPs", "uplinks".
	What string
	// Refused are the keys refused, sorted.
	Refused []string
}

func (e *CapacityError) Error() string {
	shown := e.Refused
	more := ""
	if len(shown) > 5 {
		shown, more = shown[:5], fmt.Sprintf(" and %d more", len(e.Refused)-5)
	}
	return fmt.Sprintf("%s holds at most %d %s: %d refused (%s%s); fewer per node, or a build with a bigger map",
		e.Map, e.Limit, e.What, len(e.Refused), strings.Join(shown, ", "), more)
}

// RefusedAddrs names refused addresses for a CapacityError, sorted.
func RefusedAddrs(ips []netip.Addr) []string {
	ips = slices.Clone(ips)
	slices.SortFunc(ips, netip.Addr.Compare)
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}
