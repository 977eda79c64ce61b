package placement

import (
	"fmt"
	"net/netip"
	"slices"
)

// Place decides where every floating IP of in.Gateways should be.
//
// It works in two passes. First every IP whose current node can still hold it stays there,
// so that the loads the second pass balances against are the real ones. Then the other IPs,
// oldest gateway first and in list order, each go to the best node that can take them:
// workers before control-plane nodes, then the fewest IPs held across all gateways, then the
// name. An IP no node can take stays on its cordoned node if it is on one, and is otherwise
// reported unassigned. An IP that is a node's own address, Up or Down, or a router a node
// reports, is never placed. An IP that has to move goes to its standby (in.Standbys) before
// any other node, if the standby can take it; then Place names each placed IP's standby.
func Place(in Input) Result {
	ix := newIndex(in.Nodes)
	c := claimIPs(in.Gateways)
	r := Result{
		Assignment: make(map[netip.Addr]string, len(c.order)),
		Unassigned: make(map[netip.Addr]string),
		Conflicts:  c.conflicts,
	}

	var pending []netip.Addr
	for _, ip := range c.order {
		if owner, ok := ix.addresses[ip]; ok {
			// A node announcing another node's address (or its own, twice) would take
			// that node's traffic: the webhook refuses such IPs, and this holds even
			// when the address came later or admission was bypassed.
			r.Unassigned[ip] = fmt.Sprintf("%v is the address of node %s; a floating IP must be an unused address in the nodes' subnet", ip, owner)
			if from := in.Current[ip]; from != "" {
				r.Moves = append(r.Moves, Move{IP: ip, From: from, Reason: MoveNodeAddress})
			}
			continue
		}
		if reporter, ok := ix.routers[ip]; ok {
			// Announcing the segment's router would take the traffic of every host
			// that routes through it.
			r.Unassigned[ip] = fmt.Sprintf("%v is a router on the segment (node %s routes through it); a floating IP must be an unused address in the nodes' subnet", ip, reporter)
			if from := in.Current[ip]; from != "" {
				r.Moves = append(r.Moves, Move{IP: ip, From: from, Reason: MoveRouter})
			}
			continue
		}
		if i := ix.node(in.Current[ip]); i >= 0 && ix.nodes[i].eligible(ip) {
			r.Assignment[ip] = ix.nodes[i].name
			ix.nodes[i].load++
			continue
		}
		pending = append(pending, ip)
	}

	// An IP that must leave its node goes to the standby named for it, when that node can
	// take it: that is the node the standby's promise (and, later, its copy of the
	// connections) is about. These count before the picks below, as the IPs that stay did.
	rest := pending[:0]
	for _, ip := range pending {
		from := in.Current[ip]
		s := ix.node(in.Standbys[ip])
		if s < 0 || s == ix.node(from) || !ix.nodes[s].eligible(ip) {
			rest = append(rest, ip)
			continue
		}
		r.Assignment[ip] = ix.nodes[s].name
		ix.nodes[s].load++
		if from != "" {
			r.Moves = append(r.Moves, Move{IP: ip, From: from, To: r.Assignment[ip], Reason: leaveReason(ix, ix.node(from))})
		}
	}

	for _, ip := range rest {
		from := in.Current[ip]
		cur := ix.node(from)
		pl := ix.pool(ip)
		switch i := ix.pick(pl); {
		case i >= 0:
			r.Assignment[ip] = ix.nodes[i].name
		case cur >= 0 && ix.nodes[cur].up && ix.nodes[cur].contains(ip):
			// Only the cordon stands in the way, and nobody else can take the IP: taking
			// it away would turn maintenance into an outage.
			r.Assignment[ip] = from
			ix.nodes[cur].load++
		default:
			r.Unassigned[ip] = unassignedReason(pl, ip)
		}
		if from != "" && r.Assignment[ip] != from {
			r.Moves = append(r.Moves, Move{IP: ip, From: from, To: r.Assignment[ip], Reason: leaveReason(ix, cur)})
		}
	}

	for ip, from := range in.Current {
		if _, listed := c.owner[ip]; !listed && from != "" {
			r.Moves = append(r.Moves, Move{IP: ip, From: from, Reason: MoveIPRemoved})
		}
	}
	// Current is a map, so the loop above found removed IPs in random order.
	slices.SortFunc(r.Moves, func(a, b Move) int { return a.IP.Compare(b.IP) })
	r.Standbys, r.NoStandby = standbys(ix, c.order, r.Assignment, in.Standbys)
	return r
}

// leaveReason says why the node at position cur (or -1) had to give up an IP.
func leaveReason(ix *index, cur int32) MoveReason {
	switch {
	case cur < 0:
		return MoveNodeGone
	case !ix.nodes[cur].up:
		return MoveNodeDown
	case ix.nodes[cur].cordoned:
		return MoveNodeCordoned
	default:
		return MoveSubnetGone
	}
}

// unassignedReason says why no node in pl can take ip, in words for a status condition.
func unassignedReason(pl *pool, ip netip.Addr) string {
	switch {
	case !ip.Is4():
		return fmt.Sprintf("%v is not an IPv4 address", ip)
	case len(pl.members) == 0:
		return fmt.Sprintf("no node has a subnet containing %v", ip)
	case pl.up == 0:
		return fmt.Sprintf("no Up node has a subnet containing %v (%d that do are Down)", ip, len(pl.members))
	default:
		return fmt.Sprintf("every Up node with a subnet containing %v is cordoned", ip)
	}
}
