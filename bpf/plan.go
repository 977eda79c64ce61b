package bpf

import (
	"fmt"
	"maps"
	"slices"

	"github.com/egressgw/egressgw/apiserver/routing"
)

// A write is one step of a plan: one entry of one map, which a packet sees whole, as it
// was or as it is to be. These six types are all there are; Dataplane.apply makes them.
type write interface {
	fmt.Stringer
	isWrite()
}

type (
	// putEgress points egress id at an egress IP in egw_egress.
	putEgress struct {
		id uint32
		ip ipv4
	}
	// deleteEgress removes egress id from egw_egress: what a route steers to it drops.
	deleteEgress struct{ id uint32 }
	// putPod moves a pod to a set in egw_pods, or parks it there.
	putPod struct {
		ip  ipv4
		set uint32
	}
	// deletePod removes a pod from egw_pods: it falls into the unknown set.
	deletePod struct{ ip ipv4 }
	// replaceRoutes swaps a new trie holding routes into a set's slot in egw_set_routes.
	replaceRoutes struct {
		set    uint32
		routes map[dstKey]routeValue
	}
	// deleteRoutes empties a set's slot in egw_set_routes: the set passes everything.
	deleteRoutes struct{ set uint32 }
)

func (putEgress) isWrite()     {}
func (deleteEgress) isWrite()  {}
func (putPod) isWrite()        {}
func (deletePod) isWrite()     {}
func (replaceRoutes) isWrite() {}
func (deleteRoutes) isWrite()  {}

func (w putEgress) String() string {
	return fmt.Sprintf("putting egress id %d, %s, in %s", w.id, w.ip.addr(), egwMapEgwEgress)
}

func (w deleteEgress) String() string {
	return fmt.Sprintf("deleting egress id %d from %s", w.id, egwMapEgwEgress)
}

func (w putPod) String() string {
	return fmt.Sprintf("putting pod %s in set %d in %s", w.ip.addr(), w.set, egwMapEgwPods)
}

func (w deletePod) String() string {
	return fmt.Sprintf("deleting pod %s from %s", w.ip.addr(), egwMapEgwPods)
}

func (w replaceRoutes) String() string {
	return fmt.Sprintf("replacing set %d's routes with %d in %s", w.set, len(w.routes), egwMapEgwSetRoutes)
}

func (w deleteRoutes) String() string {
	return fmt.Sprintf("deleting set %d's routes from %s", w.set, egwMapEgwSetRoutes)
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
//  4. Pods are put; each moves atomically to its set, which now holds exactly the
//     table's routes.
//  5. Stale pods are deleted (they fall into the unknown set).
//  6. The slots of sets the table no longer has are deleted: no pod refers to them now.
//  7. Egress ids held back in step 1 are put.
//  8. Stale egress ids are deleted.
//
// The unknown set never steers (routing.UnknownPodRoutes), which makes it safe to park in.
func plan(have, want state) []write {
	var ws []write
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
			ws = append(ws, putEgress{id: id, ip: want.egress[id]})
		default:
			if held {
				ws = append(ws, deleteEgress{id: id})
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
			ws = append(ws, putPod{ip: ip, set: to})
			pods[ip] = to
		}
	}

	// 3.
	var dead []uint32
	for _, set := range slices.Sorted(maps.Keys(haveSets)) {
		if !want.sets[set] {
			dead = append(dead, set)
		} else if len(wantSets[set]) == 0 {
			ws = append(ws, deleteRoutes{set: set})
		}
	}
	for _, set := range slices.Sorted(maps.Keys(wantSets)) {
		if !maps.Equal(haveSets[set], wantSets[set]) {
			ws = append(ws, replaceRoutes{set: set, routes: wantSets[set]})
		}
	}

	// 4. and 5.
	for _, ip := range sortedIPs(want.pods) {
		if cur, ok := pods[ip]; !ok || cur != want.pods[ip] {
			ws = append(ws, putPod{ip: ip, set: want.pods[ip]})
		}
	}
	for _, ip := range sortedIPs(have.pods) {
		if _, ok := want.pods[ip]; !ok {
			ws = append(ws, deletePod{ip: ip})
		}
	}

	// 6.
	for _, set := range dead {
		ws = append(ws, deleteRoutes{set: set})
	}

	// 7. and 8.
	for _, id := range late {
		ws = append(ws, putEgress{id: id, ip: want.egress[id]})
	}
	for _, id := range slices.Sorted(maps.Keys(have.egress)) {
		if _, ok := want.egress[id]; !ok {
			ws = append(ws, deleteEgress{id: id})
		}
	}
	return ws
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

func sortedIPs[V any](m map[ipv4]V) []ipv4 {
	return slices.SortedFunc(maps.Keys(m), func(a, b ipv4) int { return a.addr().Compare(b.addr()) })
}
