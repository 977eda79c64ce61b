package bpf

import (
	"fmt"
	"maps"
	"slices"

	"github.com/egressgw/egressgw/apiserver/routing"
)

// op is one map write: a put, or a delete when value is nil.
type op struct {
	m     string // egwMapEgwPods, egwMapEgwSetRoutes or egwMapEgwEgress
	key   any
	value any
}

func (o op) String() string {
	verb := "putting"
	if o.value == nil {
		verb = "deleting"
	}
	switch k := o.key.(type) {
	case ipv4:
		return fmt.Sprintf("%s pod %s in %s", verb, k.addr(), o.m)
	case uint32:
		if routes, ok := o.value.(map[dstKey]routeValue); ok && o.m == egwMapEgwSetRoutes {
			return fmt.Sprintf("replacing set %d's routes with %d in %s", k, len(routes), o.m)
		}
	}
	return fmt.Sprintf("%s %v in %s", verb, o.key, o.m)
}

// plan orders the writes that take the maps from have to want so that, at every
// instant, each packet gets the old table's verdict, the new table's, or a drop.
//
// Within one run of the agent, ids are stable and never reused within a build, so
// "put egress IPs, routes, pods; delete the stale" would do. But a restarted agent
// numbers sets and egress IPs afresh, so an id in the maps may mean another policy in
// the new table. Hence:
//
//  1. Egress ids: new ones that no route in the maps refers to are put now. An id
//     whose IP changes is deleted now (its steered packets drop: fail closed) and put
//     last, when no route of the old table is left to refer to it.
//  2. A pod leaving a set whose routes change is parked: moved straight to its new
//     set if that one's routes do not change, otherwise to the unknown set, which
//     never steers. A pod staying in a changing set sees that set's routes change.
//  3. Each set the table keeps whose routes change gets a new trie, swapped into its
//     slot in one write (a set left without routes loses its slot: no trie passes
//     everything, as an empty one would).
//  5. Pods are put; each moves atomically to its set, which now holds exactly the
//     table's routes. 6. Stale pods are deleted (they fall into the unknown set).
//  7. The slots of sets the table no longer has are deleted: no pod refers to them now.
//  8. Egress ids held back in step 1 are put, and 9. stale ones deleted.
//
// The unknown set never steers (routing.UnknownPodRoutes), which makes it safe to park in.
func plan(have, want state) []op {
	var ops []op
	put := func(m string, k, v any) { ops = append(ops, op{m: m, key: k, value: v}) }
	del := func(m string, k any) { ops = append(ops, op{m: m, key: k}) }
	haveSets, wantSets := bySet(have.routes), bySet(want.routes)
	unchanged := func(set uint32) bool { return want.sets[set] && maps.Equal(haveSets[set], wantSets[set]) }

	// 1.
	referenced := map[uint32]bool{}
	for _, v := range have.routes {
		if v.Verdict == verdictSteer {
			referenced[v.EgressID] = true
		}
	}
	var late []uint32
	for _, id := range slices.Sorted(maps.Keys(want.egress)) {
		old, held := have.egress[id]
		switch {
		case held && old == want.egress[id]:
		case !held && !referenced[id]:
			put(egwMapEgwEgress, id, want.egress[id])
		default:
			if held {
				del(egwMapEgwEgress, id)
			}
			late = append(late, id)
		}
	}

	// 2.
	pods := maps.Clone(have.pods)
	for _, ip := range sortedIPs(have.pods) {
		set := have.pods[ip]
		next, stays := want.pods[ip]
		if !want.sets[set] || unchanged(set) || (stays && next == set) {
			continue
		}
		to := uint32(routing.UnknownSet)
		if stays && unchanged(next) {
			to = next
		}
		if to != set {
			put(egwMapEgwPods, ip, to)
			pods[ip] = to
		}
	}

	// 3.
	var dead []uint32
	for _, set := range slices.Sorted(maps.Keys(haveSets)) {
		if !want.sets[set] {
			dead = append(dead, set)
		} else if len(wantSets[set]) == 0 {
			del(egwMapEgwSetRoutes, set)
		}
	}
	for _, set := range slices.Sorted(maps.Keys(wantSets)) {
		if !maps.Equal(haveSets[set], wantSets[set]) {
			put(egwMapEgwSetRoutes, set, wantSets[set])
		}
	}

	// 5. and 6.
	for _, ip := range sortedIPs(want.pods) {
		if cur, ok := pods[ip]; !ok || cur != want.pods[ip] {
			put(egwMapEgwPods, ip, want.pods[ip])
		}
	}
	for _, ip := range sortedIPs(have.pods) {
		if _, ok := want.pods[ip]; !ok {
			del(egwMapEgwPods, ip)
		}
	}

	// 7.
	for _, set := range dead {
		del(egwMapEgwSetRoutes, set)
	}

	// 8. and 9.
	for _, id := range late {
		put(egwMapEgwEgress, id, want.egress[id])
	}
	for _, id := range slices.Sorted(maps.Keys(have.egress)) {
		if _, ok := want.egress[id]; !ok {
			del(egwMapEgwEgress, id)
		}
	}
	return ops
}

// bySet splits routes into each set's trie.
func bySet(routes map[routeKey]routeValue) map[uint32]map[dstKey]routeValue {
	out := map[uint32]map[dstKey]routeValue{}
	for k, v := range routes {
		if out[k.set] == nil {
			out[k.set] = map[dstKey]routeValue{}
		}
		out[k.set][k.dstKey] = v
	}
	return out
}

func sortedIPs(m map[ipv4]uint32) []ipv4 {
	return slices.SortedFunc(maps.Keys(m), func(a, b ipv4) int { return a.addr().Compare(b.addr()) })
}
