package controller

import (
	"net/netip"
	"time"

	"github.com/egressgw/egressgw/apiserver/routing"
	"github.com/egressgw/egressgw/controller/placement"
)

// decision is what one pass writes, in the order write applies it: the grants first, then
// the gateways' status, then the policies'. It holds only what changed.
type decision struct {
	// placed is where placement wants every IP; grants is how far the grants get there
	// this pass (grants.effective: where each IP is once they are written).
	placed placement.Result
	grants grantPlan
	// grantWrites are the node specs that change, in the order they are written.
	grantWrites []grantWrite
	gateways    []gatewayWrite
	policies    []policyWrite
	// floatingIPs counts each gateway's IPs, assigned and not, for the metric.
	floatingIPs []ipCount
	// moves are the moves that happen this pass (not those waiting for a handover), to
	// count in the metrics.
	moves []placement.Move
	// requeueAt is when to pass again though nothing changes; zero for never.
	requeueAt time.Time
}

// ipCount is one gateway's floating IPs, by whether a node holds them.
type ipCount struct {
	gateway              string
	assigned, unassigned int
}

// decide is the pass's decision: where every IP goes, what each node is granted, and
// what the gateways' and policies' status says. It reads nothing but in, and writes
// nothing.
func decide(in inputs) decision {
	gateways := collectGateways(in.groups, in.legacy)
	pin := placementInput(gateways, placementNodes(in.reports, in.nodes, in.up))
	placed := placement.Place(pin)
	grantees := grantNodes(in.reports, in.up, in.lapsed, pin.Current)
	plan := planGrants(placed.Assignment, grantees)
	d := decision{placed: placed, grants: plan, grantWrites: grantWrites(grantees, plan)}

	// Status and policies show where the IPs are once the grants are written: an IP
	// waiting for its old node to let go is still on the old node.
	result := effectiveResult(placed, plan)
	views := placement.Views(pin, result)
	for _, g := range gateways {
		view := views[g.id]
		d.floatingIPs = append(d.floatingIPs, ipCount{g.id.String(), len(view.FloatingIPs), len(g.spec.FloatingIPs) - len(view.FloatingIPs)})
		if w, changed := gatewayStatus(g, view, result, in.now); changed {
			d.gateways = append(d.gateways, w)
		}
	}
	holders := func(ip string) (string, bool) {
		addr, err := netip.ParseAddr(ip)
		if err != nil {
			return "", false
		}
		node, ok := result.Assignment[addr]
		return node, ok
	}
	lookup := routing.NewGateways(routingGateways(in.groups, in.legacy))
	for i := range in.policies {
		p := &in.policies[i]
		if w, changed := policyStatus(p, routing.Resolve(&p.Spec, lookup, holders), in.now); changed {
			d.policies = append(d.policies, w)
		}
	}
	d.moves = result.Moves
	d.requeueAt = requeueAt(in.now, in.nextDown, plan.waiting)
	return d
}

// requeueAt is when to come back though nothing changes: when the first Up node would
// turn Down if it stopped renewing, and within a second while a handover waits (the old
// node's status update normally brings the next pass sooner). Zero: not at all.
func requeueAt(now, nextDown time.Time, waiting int) time.Time {
	var at time.Time
	if !nextDown.IsZero() {
		at = nextDown.Add(10 * time.Millisecond)
	}
	if waiting > 0 && (at.IsZero() || at.After(now.Add(time.Second))) {
		at = now.Add(time.Second)
	}
	return at
}
