package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/egressgw/egressgw/apiserver/routing"
)

// state is what the maps hold, or are to hold.
type state struct {
	pods   map[ipv4]uint32
	routes map[routeKey]routeValue
	egress map[uint32]ipv4
	// sets are the set ids the table has, with routes or without. For the maps, the
	// set ids that have routes.
	sets map[uint32]bool
}

// Sync makes the maps hold exactly t, diffing against what they hold now, so that an
// unchanged table writes nothing. The first Sync after Load reads the pinned maps (after
// a restart they are the truth); later ones diff against the table last written, since
// only Sync writes these maps.
//
// No packet is ever steered to an egress IP that neither the old nor the new table
// gives it, even when the ids mean other things than before, as they do after an
// agent restart, whose routing.TableBuilder numbers afresh; see plan for how.
//
// What does not fit the maps is refused, and fails closed (see fit); the rest is written,
// and Sync returns the refusals as *CapacityErrors.
func (d *Dataplane) Sync(t routing.Table) error {
	want, err := fromTable(t)
	if err != nil {
		return fmt.Errorf("the table cannot be programmed (a bug in routing.TableBuilder): %w", err)
	}
	if err := d.fits(want); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.have == nil {
		have, err := d.read()
		if err != nil {
			return err
		}
		d.have = &have
	}
	want, full := d.fit(*d.have, want)
	if err := d.apply(plan(*d.have, want)); err != nil {
		d.have = nil // the maps are somewhere between: read them next time
		return err
	}
	d.have = &want
	return full
}

func fromTable(t routing.Table) (state, error) {
	s := state{
		pods:   make(map[ipv4]uint32, len(t.Pods)),
		routes: map[routeKey]routeValue{},
		egress: make(map[uint32]ipv4, len(t.Egress)),
		sets:   make(map[uint32]bool, len(t.Sets)),
	}
	for id, ip := range t.Egress {
		if id == 0 || id > markIDMax {
			return state{}, fmt.Errorf("egress id %d of %s does not fit the packet mark (1..%d)", id, ip, markIDMax)
		}
		v4, err := toIPv4(ip)
		if err != nil {
			return state{}, fmt.Errorf("egress id %d: %w", id, err)
		}
		s.egress[id] = v4
	}
	for set, routes := range t.Sets {
		s.sets[set] = true
		for _, r := range routes {
			if !r.Prefix.Addr().Is4() {
				return state{}, fmt.Errorf("set %d: destination %s is not IPv4", set, r.Prefix)
			}
			v, err := newRouteValue(r)
			if err != nil {
				return state{}, fmt.Errorf("set %d: %w", set, err)
			}
			if _, ok := s.egress[v.EgressID]; v.Verdict == verdictSteer && !ok {
				return state{}, fmt.Errorf("set %d: route %s steers to egress id %d, which the table has no IP for", set, r.Prefix, v.EgressID)
			}
			k := newRouteKey(set, r.Prefix)
			if old, dup := s.routes[k]; dup && old != v {
				return state{}, fmt.Errorf("set %d: two routes for %s", set, r.Prefix.Masked())
			}
			s.routes[k] = v
		}
	}
	for ip, set := range t.Pods {
		v4, err := toIPv4(ip)
		if err != nil {
			return state{}, fmt.Errorf("pod: %w", err)
		}
		if !s.sets[set] {
			return state{}, fmt.Errorf("pod %s is in set %d, which the table has no routes for", ip, set)
		}
		s.pods[v4] = set
	}
	return s, nil
}

// fits reports a table that does not fit the maps whose ids routing.TableBuilder bounds
// (a bug there, if it happens).
func (d *Dataplane) fits(s state) error {
	for _, c := range []struct {
		m *ebpf.Map
		n int
	}{{d.objs.EgwSetRoutes, len(s.sets)}, {d.objs.EgwEgress, len(s.egress)}} {
		if c.n > int(c.m.MaxEntries()) {
			return fmt.Errorf("the table needs %d entries in %s, which holds %d (routing.TableBuilder bounds the ids to fit: a bug)", c.n, c.m, c.m.MaxEntries())
		}
	}
	return nil
}

// everywhere is the route that a set past its trie's size falls back to.
var everywhere = dstKey{}

// fit trims want to what the maps can take on top of have, failing closed, and returns
// the refusals:
//   - a set with more routes than a trie holds keeps only its in-cluster routes, and
//     drops everything else (0.0.0.0/0 → Drop): a destination left out would pass, and
//     leave with the node IP;
//   - egw_pods: pods it holds keep their entries; new ones, lowest IP first, fill the
//     room left beside every pod it holds now (the stale go after the new are put), and
//     the rest stay in the unknown set, which drops every policy destination.
func (d *Dataplane) fit(have, want state) (state, error) {
	var errs []error
	limit := int(d.routesSpec.MaxEntries)
	var sets []string
	for set, routes := range bySet(want.routes) {
		if len(routes) <= limit {
			continue
		}
		for k, v := range routes {
			if v.Verdict != verdictInCluster {
				delete(want.routes, routeKey{set: set, dstKey: k})
			}
		}
		want.routes[routeKey{set: set, dstKey: everywhere}] = routeValue{Verdict: verdictDrop}
		sets = append(sets, fmt.Sprintf("set %d (%d routes)", set, len(routes)))
	}
	if len(sets) > 0 {
		slices.Sort(sets)
		errs = append(errs, &CapacityError{Map: egwMapEgwSetRoutes + "'s tries", Limit: limit,
			What: "routes per set of policies (set 0 is the union of all destinations; a set past it drops all but in-cluster traffic)", Refused: sets})
	}
	room := int(d.objs.EgwPods.MaxEntries()) - len(have.pods)
	var pods []netip.Addr
	for _, ip := range sortedIPs(want.pods) {
		if _, held := have.pods[ip]; held {
			continue
		}
		if room > 0 {
			room--
			continue
		}
		pods = append(pods, ip.addr())
		delete(want.pods, ip)
	}
	if len(pods) > 0 {
		errs = append(errs, &CapacityError{Map: egwMapEgwPods, Limit: int(d.objs.EgwPods.MaxEntries()),
			What: "pods (the rest stay in the unknown set, which drops every policy destination)", Refused: refuseAddrs(pods)})
	}
	return want, errors.Join(errs...)
}

func (d *Dataplane) read() (state, error) {
	var s state
	var err error
	if s.pods, err = dump[ipv4, uint32](d.objs.EgwPods); err != nil {
		return state{}, err
	}
	if s.egress, err = dump[uint32, ipv4](d.objs.EgwEgress); err != nil {
		return state{}, err
	}
	// A set's slot holds its trie's map id.
	tries, err := dump[uint32, uint32](d.objs.EgwSetRoutes)
	if err != nil {
		return state{}, err
	}
	s.routes, s.sets = map[routeKey]routeValue{}, make(map[uint32]bool, len(tries))
	for set, id := range tries {
		routes, err := dumpTrie(id)
		if err != nil {
			return state{}, fmt.Errorf("set %d: %w", set, err)
		}
		for k, v := range routes {
			s.routes[routeKey{set: set, dstKey: k}] = v
		}
		s.sets[set] = true
	}
	return s, nil
}

func dumpTrie(id uint32) (map[dstKey]routeValue, error) {
	m, err := ebpf.NewMapFromID(ebpf.MapID(id))
	if err != nil {
		return nil, fmt.Errorf("opening routes trie %d: %w", id, err)
	}
	defer m.Close()
	// LPM tries have no batch operations.
	return iterate[dstKey, routeValue](m)
}

// dump reads a whole map, in batches where the kernel supports them: an unchanged
// Sync reads every entry, so this is most of its cost.
func dump[K comparable, V any](m *ebpf.Map) (map[K]V, error) {
	out := map[K]V{}
	keys, values := make([]K, 4096), make([]V, 4096)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, keys, values, nil)
		for i := range n {
			out[keys[i]] = values[i]
		}
		switch {
		case errors.Is(err, ebpf.ErrKeyNotExist):
			return out, nil
		case errors.Is(err, ebpf.ErrNotSupported):
			return iterate[K, V](m)
		case err != nil:
			return nil, fmt.Errorf("reading %s: %w", m, err)
		}
	}
}

func iterate[K comparable, V any](m *ebpf.Map) (map[K]V, error) {
	out := map[K]V{}
	var k K
	var v V
	it := m.Iterate()
	for it.Next(&k, &v) {
		out[k] = v
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", m, err)
	}
	return out, nil
}

// apply makes a plan's writes, in order.
func (d *Dataplane) apply(ws []write) error {
	for _, w := range ws {
		var m *ebpf.Map
		var err error
		switch w := w.(type) {
		case putEgress:
			m = d.objs.EgwEgress
			err = m.Update(w.id, w.ip, ebpf.UpdateAny)
		case deleteEgress:
			m = d.objs.EgwEgress
			err = deleteKey(m, w.id)
		case putPod:
			m = d.objs.EgwPods
			err = m.Update(w.ip, w.set, ebpf.UpdateAny)
		case deletePod:
			m = d.objs.EgwPods
			err = deleteKey(m, w.ip)
		case replaceRoutes:
			m = d.objs.EgwSetRoutes
			err = d.replaceTrie(w.set, w.routes)
		case deleteRoutes:
			m = d.objs.EgwSetRoutes
			err = deleteKey(m, w.set)
		default:
			return fmt.Errorf("%s: apply has no case for a %T (a bug)", w, w)
		}
		switch {
		case errors.Is(err, unix.E2BIG), errors.Is(err, unix.ENOSPC):
			return fmt.Errorf("%s: the map is full (%d entries) with the old and new tables' entries together: %w; sync a table half the size first", w, m.MaxEntries(), err)
		case err != nil:
			return fmt.Errorf("%s: %w", w, err)
		}
		d.writes++
		if d.afterWrite != nil {
			d.afterWrite()
		}
	}
	return nil
}

// deleteKey deletes key from m; a key that is not there is deleted already.
func deleteKey(m *ebpf.Map, key any) error {
	if err := m.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	return nil
}

// replaceTrie fills a new trie with a set's routes and swaps it into the set's slot:
// one write, so a lookup sees the set's old routes or its new ones, never a mix.
func (d *Dataplane) replaceTrie(set uint32, routes map[dstKey]routeValue) error {
	trie, err := ebpf.NewMap(d.routesSpec)
	if err != nil {
		return fmt.Errorf("creating a routes trie: %w", err)
	}
	defer trie.Close() // the slot keeps it alive
	for k, v := range routes {
		if err := trie.Update(k, v, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("route %s: %w", k.prefix(), err)
		}
	}
	return d.objs.EgwSetRoutes.Update(set, trie, ebpf.UpdateAny)
}

// Numbering returns the set id of every pod and the egress IP of every egress id that the
// pinned maps hold, so that a restarted agent numbers its tables as its predecessor did
// (routing.TableBuilder.Seed) and its first Sync changes nothing.
func (d *Dataplane) Numbering() (map[netip.Addr]uint32, map[uint32]netip.Addr, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	pods, err := dump[ipv4, uint32](d.objs.EgwPods)
	if err != nil {
		return nil, nil, err
	}
	egress, err := dump[uint32, ipv4](d.objs.EgwEgress)
	if err != nil {
		return nil, nil, err
	}
	outPods := make(map[netip.Addr]uint32, len(pods))
	for ip, set := range pods {
		outPods[ip.addr()] = set
	}
	outEgress := make(map[uint32]netip.Addr, len(egress))
	for id, ip := range egress {
		outEgress[id] = ip.addr()
	}
	return outPods, outEgress, nil
}
