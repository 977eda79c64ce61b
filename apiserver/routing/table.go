package routing

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Table is what one node's dataplane holds: its pods, grouped into sets by the policies
// that select them; each set's routes; and the egress IPs those routes steer to. The ids
// are small numbers the BPF maps use; they stay stable across builds (see IDs), so that
// updating the maps entry by entry never points a packet at another policy's egress IP.
type Table struct {
	// Pods maps a local pod's IP to its set. Pods that no policy selects are in the set
	// of no policies, whose routes are only the in-cluster ones.
	Pods map[netip.Addr]uint32
	// Sets maps a set id to its routes. Set 0 is for pods the node does not know yet.
	Sets map[uint32][]TableRoute
	// Egress maps an egress id to its egress IP.
	Egress map[uint32]netip.Addr
	// Refused says what the id spaces could not number, failing closed: an egress IP
	// past MaxEgressIDs gets Drop routes, and a pod whose set is past MaxSets stays in
	// the unknown set. Nil when everything fits.
	Refused []*CapacityError
}

// TableRoute is a Route with the ids the dataplane needs.
type TableRoute struct {
	Route
	EgressID uint32 // 0 unless Verdict is SNAT
}

// UnknownSet is the set of pods the node does not know yet.
const UnknownSet = 0

// IDs hands out small numbers for keys, and keeps a key's number for as long as the key
// is in use. The zero value is not usable; use NewIDs.
type IDs struct {
	byKey map[string]uint32
	free  []uint32
	next  uint32
	max   uint32
	used  map[string]bool
}

// NewIDs numbers keys from first to max.
func NewIDs(first, max uint32) *IDs {
	return &IDs{byKey: map[string]uint32{}, next: first, max: max, used: map[string]bool{}}
}

// Get returns the id of key, handing out a new one if key has none.
func (ids *IDs) Get(key string) (uint32, error) {
	ids.used[key] = true
	if id, ok := ids.byKey[key]; ok {
		return id, nil
	}
	var id uint32
	switch {
	case len(ids.free) > 0:
		id, ids.free = ids.free[len(ids.free)-1], ids.free[:len(ids.free)-1]
	case ids.next <= ids.max:
		id = ids.next
		ids.next++
	default:
		return 0, fmt.Errorf("more than %d distinct ids are in use", ids.max)
	}
	ids.byKey[key] = id
	return id, nil
}

// has returns the id key has, without asking for it.
func (ids *IDs) has(key string) (uint32, bool) {
	id, ok := ids.byKey[key]
	return id, ok
}

// available is how many more keys can get ids before the next Sweep.
func (ids *IDs) available() int {
	return len(ids.free) + int(ids.max) - int(ids.next) + 1
}

// Keep gives key the id it had before, e.g. in a previous process, if that id is free.
// Call it before any Get.
func (ids *IDs) Keep(key string, id uint32) error {
	if old, ok := ids.byKey[key]; ok {
		if old == id {
			return nil
		}
		return fmt.Errorf("%s already has id %d, not %d", key, old, id)
	}
	switch {
	case id < 1 || id > ids.max:
		return fmt.Errorf("id %d for %s is out of range 1..%d", id, key, ids.max)
	case id >= ids.next:
		for free := ids.next; free < id; free++ {
			ids.free = append(ids.free, free)
		}
		ids.next = id + 1
	default:
		i := slices.Index(ids.free, id)
		if i < 0 {
			return fmt.Errorf("id %d for %s is taken", id, key)
		}
		ids.free = slices.Delete(ids.free, i, i+1)
	}
	ids.byKey[key] = id
	ids.used[key] = true
	return nil
}

// Sweep frees the ids of keys not asked for since the last Sweep. Sweep once per build,
// after it: a build then never reuses an id that the tables before it still refer to.
func (ids *IDs) Sweep() {
	for key, id := range ids.byKey {
		if !ids.used[key] {
			delete(ids.byKey, key)
			ids.free = append(ids.free, id)
		}
	}
	ids.used = map[string]bool{}
}

// TableBuilder builds a node's tables, keeping set and egress ids stable between builds.
type TableBuilder struct {
	sets, egress *IDs
	// seed is the numbering a previous process left in the dataplane, for the first build.
	seedPods   map[netip.Addr]uint32
	seedEgress map[uint32]netip.Addr
}

// Seed makes the next build keep the ids the dataplane already uses, where they still
// mean the same: a restarted agent's first tables then change nothing in the maps.
func (b *TableBuilder) Seed(pods map[netip.Addr]uint32, egress map[uint32]netip.Addr) {
	b.seedPods, b.seedEgress = pods, egress
}

// MaxEgressIDs is how many egress IPs one node's tables can steer to: the id travels in
// 12 bits of the packet mark. egw_egress holds 4096, so that the old and new tables'
// ids together always fit.
const MaxEgressIDs = 1<<12 - 1

// MaxSets is how many sets of policies one node's tables can have besides the unknown
// set: egw_set_routes has 65,536 slots, keyed by set id, so that ids 0..MaxSets always
// fit, the old and new tables' together.
const MaxSets = 1<<16 - 1

// NewTableBuilder returns a builder with no ids handed out.
func NewTableBuilder() *TableBuilder {
	return &TableBuilder{sets: NewIDs(UnknownSet+1, MaxSets), egress: NewIDs(1, MaxEgressIDs)}
}

// LocalPod is a pod on this node with its namespace's labels.
type LocalPod struct {
	Pod
	NamespaceLabels map[string]string
}

// Build computes the tables for the node's pods. Pods without an IPv4 address and
// host-network pods are left out: their traffic is not steered. What the id spaces cannot
// number is refused, in t.Refused, and fails closed; the rest of the table is whole.
func (b *TableBuilder) Build(ps *Policies, pods []LocalPod, cluster []netip.Prefix) (Table, error) {
	t := Table{Pods: map[netip.Addr]uint32{}, Sets: map[uint32][]TableRoute{}, Egress: map[uint32]netip.Addr{}}
	b.keepSeed(ps, pods)
	sets := map[uint32][]Route{UnknownSet: UnknownPodRoutes(ps, cluster)}
	order := []uint32{UnknownSet} // the sets as the pods meet them: ids go out in this order
	var refusedPods []string
	for _, pod := range pods {
		if !pod.IP.Is4() || pod.HostNetwork {
			continue
		}
		selected := ps.Selecting(pod.Pod, pod.NamespaceLabels)
		id, err := b.sets.Get(setKey(selected))
		if err != nil {
			// Out of set ids: the pod stays in the unknown set, which drops every
			// policy destination.
			refusedPods = append(refusedPods, pod.Namespace+"/"+pod.Name)
			continue
		}
		t.Pods[pod.IP] = id
		if _, done := sets[id]; !done {
			sets[id] = Routes(selected, cluster)
			order = append(order, id)
		}
	}
	if len(refusedPods) > 0 {
		slices.Sort(refusedPods)
		t.Refused = append(t.Refused, &CapacityError{Map: "set ids", Limit: MaxSets,
			What:    "sets of policies (pods selected by distinct sets of policies; the rest stay in the unknown set, which drops every policy destination)",
			Refused: refusedPods})
	}
	if refused := b.numberEgress(&t, sets, order); refused != nil {
		t.Refused = append(t.Refused, refused)
	}
	b.sets.Sweep()
	b.egress.Sweep()
	return t, nil
}

// numberEgress gives each egress IP the routes steer to its id, and puts the routes in t.
// An IP keeps the id it has. New ones get free ids in the order the sets (in order) meet
// them; short of ids, the
// ids of IPs no route steers to any more are freed now rather than a build later (the
// dataplane's plan handles an id that changes IP), and the IPs still left over are
// refused: their routes Drop, so that their traffic never leaves with another source.
func (b *TableBuilder) numberEgress(t *Table, sets map[uint32][]Route, order []uint32) *CapacityError {
	ids := map[netip.Addr]uint32{}
	seen := map[netip.Addr]bool{}
	var fresh []netip.Addr
	for _, set := range order {
		for _, r := range sets[set] {
			ip, ok := egressIP(r)
			if !ok || seen[ip] {
				continue
			}
			seen[ip] = true
			if id, held := b.egress.has(ip.String()); held {
				ids[ip] = id
				_, _ = b.egress.Get(ip.String()) // in use: Sweep keeps it
				continue
			}
			fresh = append(fresh, ip)
		}
	}
	if len(fresh) > b.egress.available() {
		b.egress.Sweep()
		for ip := range ids {
			_, _ = b.egress.Get(ip.String())
		}
	}
	var refused []netip.Addr
	for _, ip := range fresh {
		id, err := b.egress.Get(ip.String())
		if err != nil {
			refused = append(refused, ip)
			continue
		}
		ids[ip] = id
	}
	for set, routes := range sets {
		out := make([]TableRoute, len(routes))
		for i, r := range routes {
			out[i].Route = r
			if r.Verdict != SNAT {
				continue
			}
			ip, _ := egressIP(r)
			id, ok := ids[ip]
			if !ok {
				// Resolve never marks a policy with a bad IP ready, and a refused IP
				// has no id: fail closed either way.
				out[i].Verdict = Drop
				continue
			}
			out[i].EgressID = id
			t.Egress[id] = ip
		}
		t.Sets[set] = out
	}
	if len(refused) == 0 {
		return nil
	}
	return &CapacityError{Map: "egress ids", Limit: MaxEgressIDs,
		What: "egress IPs (the packet mark carries a 12-bit id; the routes to the rest drop)", Refused: RefusedAddrs(refused)}
}

// egressIP is the IPv4 egress IP a SNAT route steers to.
func egressIP(r Route) (netip.Addr, bool) {
	if r.Verdict != SNAT {
		return netip.Addr{}, false
	}
	ip, err := netip.ParseAddr(r.Policy.Resolution.EgressIP)
	if err != nil || !ip.Is4() {
		return netip.Addr{}, false
	}
	return ip, true
}

// keepSeed gives every key the id the seed gave it, before any id is handed out. An id
// that two keys claim (a pod's policies changed while no agent ran) goes to neither:
// they get new ones, which is correct, if not free.
func (b *TableBuilder) keepSeed(ps *Policies, pods []LocalPod) {
	if b.seedPods == nil && b.seedEgress == nil {
		return
	}
	for id, ip := range b.seedEgress {
		_ = b.egress.Keep(ip.String(), id) // taken or out of range: numbered afresh
	}
	keys := map[uint32]string{}
	clash := map[uint32]bool{}
	for _, pod := range pods {
		old, ok := b.seedPods[pod.IP]
		if !ok || old == UnknownSet || !pod.IP.Is4() || pod.HostNetwork {
			continue
		}
		key := setKey(ps.Selecting(pod.Pod, pod.NamespaceLabels))
		if k, seen := keys[old]; seen && k != key {
			clash[old] = true
		}
		keys[old] = key
	}
	for id, key := range keys {
		if !clash[id] {
			_ = b.sets.Keep(key, id)
		}
	}
	b.seedPods, b.seedEgress = nil, nil
}

// setKey names a set by its policies in precedence order. Two pods selected by the same
// policies share a set, and so their routes.
func setKey(selected []*Policy) string {
	names := make([]string, len(selected))
	for i, p := range selected {
		names[i] = p.Name
	}
	return strings.Join(names, "\x00")
}
