package placement

import (
	"fmt"
	"net/netip"
)

// standbys names, for each placed IP, the node Place would move it to if its holder went
// Down and nothing else changed; or, in noStandby, why there is none. ix holds the loads of
// the final assignment, and order is the order Place placed IPs in.
//
// For one holder that is a replay of Place's second pass over the holder's IPs: first each
// IP whose previous standby can still take it keeps it, then the others go, in order, to the
// best other node (workers first, then fewest IPs, then name), each counting towards that
// node's load. So a holder's IPs spread over the other nodes as they would on failover.
// Standbys of different holders do not count against each other: each answers for one
// holder failing, which is the case Place decides when it happens.
func standbys(ix *index, order []netip.Addr, assignment, prev map[netip.Addr]string) (standby, noStandby map[netip.Addr]string) {
	standby = make(map[netip.Addr]string, len(assignment))
	noStandby = make(map[netip.Addr]string)
	held := make([][]netip.Addr, len(ix.nodes)) // by node position, in placement order
	for _, ip := range order {
		if name, ok := assignment[ip]; ok {
			h := ix.node(name)
			held[h] = append(held[h], ip)
		}
	}

	// extra is the load one holder's failover adds, by node position; touched says which
	// entries to reset for the next holder.
	extra := make([]int32, len(ix.nodes))
	var touched []int32
	var rest []netip.Addr
	for h := range int32(len(held)) {
		for _, i := range touched {
			extra[i] = 0
		}
		touched, rest = touched[:0], rest[:0]
		for _, ip := range held[h] {
			s := ix.node(prev[ip])
			if s < 0 || s == h || !ix.nodes[s].eligible(ip) {
				rest = append(rest, ip)
				continue
			}
			standby[ip] = ix.nodes[s].name
			extra[s]++
			touched = append(touched, s)
		}
		for _, ip := range rest {
			pl := ix.pool(ip)
			best := entry{idx: -1}
			for _, i := range pl.members {
				n := &ix.nodes[i]
				if i == h || !n.up || n.cordoned { // a pool's members all have ip's subnet
					continue
				}
				e := entry{idx: i, load: n.load + extra[i], controlPlane: n.controlPlane}
				if best.idx < 0 || e.better(best) {
					best = e
				}
			}
			if best.idx < 0 {
				noStandby[ip] = noStandbyReason(ix, pl, h, ip)
				continue
			}
			standby[ip] = ix.nodes[best.idx].name
			extra[best.idx]++
			touched = append(touched, best.idx)
		}
	}
	return standby, noStandby
}

// noStandbyReason says why no node but the holder h can take ip, in words for a status.
func noStandbyReason(ix *index, pl *pool, h int32, ip netip.Addr) string {
	others, up := 0, 0
	for _, i := range pl.members {
		if i != h {
			others++
			if ix.nodes[i].up {
				up++
			}
		}
	}
	switch {
	case others == 0:
		return fmt.Sprintf("no other node has a subnet containing %v", ip)
	case up == 0:
		return fmt.Sprintf("no other Up node has a subnet containing %v (%d that do are Down)", ip, others)
	default:
		return fmt.Sprintf("every other Up node with a subnet containing %v is cordoned", ip)
	}
}
