package placement

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// TestProperties checks rules that must hold for every cluster, on 500 random clusters
// each. A failure names the seed, so it can be replayed.
func TestProperties(t *testing.T) {
	tests := []struct {
		name  string
		gen   func(*rand.Rand) Input
		check func(r *rand.Rand, in Input, got Result) error
	}{
		{"every listed IP is placed or unassigned, never both", randomCluster, checkPartition},
		{"an IP is placed only on an Up node whose subnet contains it", randomCluster, checkContainment},
		{"no node's own address is ever placed", randomCluster, checkNodeAddresses},
		{"a cordoned node keeps only an IP it held and no other node can take", randomCluster, checkCordoned},
		{"an IP whose node can keep it does not move", randomCluster, checkSticky},
		{"moves are exactly the changes from Current, with the right reason", randomCluster, checkMoves},
		{"each new IP goes to the preferred role, least loaded, first by name", randomCluster, checkPreference},
		{"every IP listed twice is a conflict won by the oldest gateway", randomCluster, checkConflicts},
		{"a restart with the result as Current changes nothing", randomCluster, checkRestart},
		{"new nodes move no IP whose node can keep it", randomCluster, checkNodeAdded},
		{"shuffled input gives the same result", randomCluster, checkShuffled},
		{"an IP that must move goes to its standby when the standby can take it", randomCluster, checkToStandby},
		{"each standby is where Place moves the IP if its holder goes Down", randomCluster, checkStandbys},
		{"a standby that can still take its IP stays named when nodes are added", randomCluster, checkStandbyStays},
		{"placement from scratch balances each subnet's workers within one IP", flatCluster, checkBalance},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for seed := range uint64(500) {
				r := rand.New(rand.NewPCG(seed, 1))
				in := tt.gen(r)
				if err := tt.check(r, in, Place(in)); err != nil {
					t.Fatalf("seed %d: %v\ninput: %+v", seed, err, in)
				}
			}
		})
	}
}

func checkPartition(_ *rand.Rand, in Input, got Result) error {
	o := newOracle(in)
	for _, ip := range o.order {
		_, placed := got.Assignment[ip]
		_, unassigned := got.Unassigned[ip]
		if placed == unassigned {
			return fmt.Errorf("%v: placed %t, unassigned %t", ip, placed, unassigned)
		}
	}
	for ip := range got.Assignment {
		if o.listers[ip] == nil {
			return fmt.Errorf("%v is placed but no gateway lists it", ip)
		}
	}
	for ip := range got.Unassigned {
		if o.listers[ip] == nil {
			return fmt.Errorf("%v is unassigned but no gateway lists it", ip)
		}
	}
	return nil
}

func checkContainment(_ *rand.Rand, in Input, got Result) error {
	o := newOracle(in)
	for ip, name := range got.Assignment {
		n, ok := o.nodes[name]
		if !ok || !n.Up || !slices.ContainsFunc(n.Subnets, func(p netip.Prefix) bool { return p.Contains(ip) }) {
			return fmt.Errorf("%v is on %q, which is %+v", ip, name, n)
		}
	}
	return nil
}

func checkNodeAddresses(_ *rand.Rand, in Input, got Result) error {
	o := newOracle(in)
	for ip, name := range got.Assignment {
		if o.nodeAddress(ip) {
			return fmt.Errorf("%v is a node's address, yet it is placed on %s", ip, name)
		}
	}
	return nil
}

func checkCordoned(_ *rand.Rand, in Input, got Result) error {
	o := newOracle(in)
	for ip, name := range got.Assignment {
		if !o.nodes[name].Cordoned {
			continue
		}
		if in.Current[ip] != name {
			return fmt.Errorf("%v newly placed on cordoned %s", ip, name)
		}
		if c := o.candidates(ip); len(c) > 0 {
			return fmt.Errorf("%v stays on cordoned %s although %s could take it", ip, name, c[0].Name)
		}
	}
	return nil
}

func checkSticky(_ *rand.Rand, in Input, got Result) error {
	o := newOracle(in)
	for _, ip := range o.order {
		if o.sticky(ip) && got.Assignment[ip] != in.Current[ip] {
			return fmt.Errorf("%v moved from %s to %q", ip, in.Current[ip], got.Assignment[ip])
		}
	}
	return nil
}

func checkMoves(_ *rand.Rand, in Input, got Result) error {
	o := newOracle(in)
	var want []Move
	for ip, from := range in.Current {
		to := got.Assignment[ip]
		if from == "" || to == from {
			continue
		}
		m := Move{IP: ip, From: from, To: to}
		n, exists := o.nodes[from]
		switch {
		case o.listers[ip] == nil:
			m.Reason = MoveIPRemoved
		case o.nodeAddress(ip):
			m.Reason = MoveNodeAddress
		case !exists:
			m.Reason = MoveNodeGone
		case !n.Up:
			m.Reason = MoveNodeDown
		case n.Cordoned:
			m.Reason = MoveNodeCordoned
		default:
			m.Reason = MoveSubnetGone
		}
		want = append(want, m)
	}
	slices.SortFunc(want, func(a, b Move) int { return a.IP.Compare(b.IP) })
	if !slices.Equal(got.Moves, want) {
		return fmt.Errorf("moves:\n got %v\nwant %v", got.Moves, want)
	}
	return nil
}

// checkPreference replays the placement in its documented order: IPs that stay count first,
// then each new IP must go to the best candidate given the loads at that moment.
func checkPreference(_ *rand.Rand, in Input, got Result) error {
	o := newOracle(in)
	load := make(map[string]int)
	for _, ip := range o.order {
		switch {
		case o.sticky(ip):
			load[in.Current[ip]]++
		case o.toStandby(ip):
			load[in.Standbys[ip]]++
		}
	}
	for _, ip := range o.order {
		name, placed := got.Assignment[ip]
		if !placed || o.sticky(ip) || o.toStandby(ip) || o.nodes[name].Cordoned {
			continue // stayed, went to its standby (checkToStandby's), or kept by a cordoned node (checkCordoned's)
		}
		c := o.candidates(ip)
		// Control-plane nodes are candidates only when no worker is.
		if slices.ContainsFunc(c, func(n Node) bool { return !n.ControlPlane }) {
			c = slices.DeleteFunc(c, func(n Node) bool { return n.ControlPlane })
		}
		best := c[0].Name
		for _, n := range c[1:] {
			if load[n.Name] < load[best] {
				best = n.Name // c is sorted by name, so ties keep the first name
			}
		}
		if name != best {
			return fmt.Errorf("%v went to %s (load %d), want %s (load %d); loads %v",
				ip, name, load[name], best, load[best], load)
		}
		load[name]++
	}
	return nil
}

func checkConflicts(_ *rand.Rand, in Input, got Result) error {
	o := newOracle(in)
	var want []Conflict
	for _, ip := range slices.SortedFunc(maps.Keys(o.listers), netip.Addr.Compare) {
		for _, loser := range o.listers[ip][1:] {
			want = append(want, Conflict{IP: ip, Winner: o.listers[ip][0], Loser: loser})
		}
	}
	if !slices.Equal(got.Conflicts, want) {
		return fmt.Errorf("conflicts:\n got %v\nwant %v", got.Conflicts, want)
	}
	return nil
}

func checkRestart(_ *rand.Rand, in Input, got Result) error {
	in.Current, in.Standbys = got.Assignment, got.Standbys
	again := Place(in)
	if len(again.Moves) > 0 {
		return fmt.Errorf("restart moved %v", again.Moves)
	}
	got.Moves = nil
	return sameResult(again, got)
}

func checkNodeAdded(r *rand.Rand, in Input, got Result) error {
	in.Nodes = slices.Clone(in.Nodes)
	for i := range 1 + r.IntN(3) {
		in.Nodes = append(in.Nodes, randomNode(r, fmt.Sprintf("new%d", i), clusterSubnets))
	}
	in.Current = got.Assignment
	after := Place(in)
	o := newOracle(in) // a new node's address is never placed, so it may move an IP
	for ip, name := range got.Assignment {
		if o.canHold(name, ip) && after.Assignment[ip] != name {
			return fmt.Errorf("%v moved from %s to %q when nodes were added", ip, name, after.Assignment[ip])
		}
	}
	return nil
}

func checkToStandby(_ *rand.Rand, in Input, got Result) error {
	o := newOracle(in)
	for _, ip := range o.order {
		if o.toStandby(ip) && got.Assignment[ip] != in.Standbys[ip] {
			return fmt.Errorf("%v left %q for %q, not for its standby %s", ip, in.Current[ip], got.Assignment[ip], in.Standbys[ip])
		}
	}
	return nil
}

// checkStandbys fails each holder in turn and asks Place itself where the holder's IPs go:
// with the standbys the input had (the same rules, replayed) and with those just named
// (what the controller's next pass does).
func checkStandbys(_ *rand.Rand, in Input, got Result) error {
	for ip, name := range got.Assignment {
		s, named := got.Standbys[ip]
		why, none := got.NoStandby[ip]
		if named == none || (none && why == "") {
			return fmt.Errorf("%v on %s: standby %q, no standby %q; want exactly one", ip, name, s, why)
		}
		if s == name {
			return fmt.Errorf("%v: its standby is its holder %s", ip, name)
		}
	}
	for ip := range got.Standbys {
		if _, placed := got.Assignment[ip]; !placed {
			return fmt.Errorf("%v is not placed, yet has standby %s", ip, got.Standbys[ip])
		}
	}
	for ip := range got.NoStandby {
		if _, placed := got.Assignment[ip]; !placed {
			return fmt.Errorf("%v is not placed, yet has a reason for no standby", ip)
		}
	}
	for _, holder := range slices.Sorted(maps.Values(got.Assignment)) {
		nodes := slices.Clone(in.Nodes)
		for i := range nodes {
			if nodes[i].Name == holder {
				nodes[i].Up = false
			}
		}
		for _, prev := range []map[netip.Addr]string{in.Standbys, got.Standbys} {
			after := Place(Input{Gateways: in.Gateways, Nodes: nodes, Current: got.Assignment, Standbys: prev})
			for ip, name := range got.Assignment {
				if name != holder {
					continue
				}
				if after.Assignment[ip] != got.Standbys[ip] {
					return fmt.Errorf("%v: with %s Down it goes to %q, but its standby is %q (previous standbys %v)",
						ip, holder, after.Assignment[ip], got.Standbys[ip], prev)
				}
			}
		}
	}
	return nil
}

func checkStandbyStays(r *rand.Rand, in Input, got Result) error {
	in.Nodes = slices.Clone(in.Nodes)
	for i := range 1 + r.IntN(3) {
		in.Nodes = append(in.Nodes, randomNode(r, fmt.Sprintf("new%d", i), clusterSubnets))
	}
	in.Current, in.Standbys = got.Assignment, got.Standbys
	after := Place(in)
	o := newOracle(in)
	for ip, s := range got.Standbys {
		if o.canHold(s, ip) && after.Assignment[ip] == got.Assignment[ip] && after.Standbys[ip] != s {
			return fmt.Errorf("%v on %s: standby changed from %s to %q when nodes were added", ip, got.Assignment[ip], s, after.Standbys[ip])
		}
	}
	return nil
}

func checkShuffled(r *rand.Rand, in Input, got Result) error {
	return sameResult(Place(shuffled(r, in)), got)
}

func checkBalance(_ *rand.Rand, in Input, got Result) error {
	o := newOracle(in)
	load := make(map[string]int)
	for _, name := range got.Assignment {
		load[name]++
	}
	for _, s := range []string{"10.0.0.0/24", "10.0.1.0/24", "192.168.1.0/24"} {
		ip := netip.MustParsePrefix(s).Addr()
		lo, hi, workers := 1<<30, 0, 0
		for _, n := range o.candidates(ip) {
			if !n.ControlPlane {
				workers++
				lo, hi = min(lo, load[n.Name]), max(hi, load[n.Name])
			}
		}
		if workers > 0 && hi-lo > 1 {
			return fmt.Errorf("workers on %s hold between %d and %d IPs: %v", s, lo, hi, got.Assignment)
		}
		for _, n := range o.candidates(ip) {
			if workers > 0 && n.ControlPlane && load[n.Name] > 0 {
				return fmt.Errorf("control-plane %s holds an IP while workers on %s could", n.Name, s)
			}
		}
	}
	return nil
}

// sameResult is checkResult for property tests, which report rather than fail.
func sameResult(got, want Result) error {
	var errs []error
	if !maps.Equal(got.Assignment, want.Assignment) {
		errs = append(errs, fmt.Errorf("assignment:\n got %v\nwant %v", got.Assignment, want.Assignment))
	}
	if !maps.Equal(got.Unassigned, want.Unassigned) {
		errs = append(errs, fmt.Errorf("unassigned:\n got %v\nwant %v", got.Unassigned, want.Unassigned))
	}
	if !slices.Equal(got.Moves, want.Moves) {
		errs = append(errs, fmt.Errorf("moves:\n got %v\nwant %v", got.Moves, want.Moves))
	}
	if !slices.Equal(got.Conflicts, want.Conflicts) {
		errs = append(errs, fmt.Errorf("conflicts:\n got %v\nwant %v", got.Conflicts, want.Conflicts))
	}
	if !maps.Equal(got.Standbys, want.Standbys) {
		errs = append(errs, fmt.Errorf("standbys:\n got %v\nwant %v", got.Standbys, want.Standbys))
	}
	if !maps.Equal(got.NoStandby, want.NoStandby) {
		errs = append(errs, fmt.Errorf("no standby:\n got %v\nwant %v", got.NoStandby, want.NoStandby))
	}
	return errors.Join(errs...)
}
