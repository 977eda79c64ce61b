package bpf

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/egressgw/egressgw/apiserver/routing"
)

// TestPlan checks plan's order without the kernel, on many table pairs: applied one
// write at a time to a model of the maps, every probe gets the old outcome, the new
// one, or a drop, and the model ends holding exactly the new table.
func TestPlan(t *testing.T) {
	a, b, srcs, dsts := restartTables(t)
	scenarios := []struct {
		name     string
		old, new routing.Table
	}{
		{name: "restart renumbers", old: a, new: b},
		{name: "and back", old: b, new: a},
		{name: "from empty", old: routing.Table{}, new: a},
		{name: "to empty", old: a, new: routing.Table{}},
	}
	for seed := range 200 {
		old, new := randomTables(t, seed)
		scenarios = append(scenarios, struct {
			name     string
			old, new routing.Table
		}{name: fmt.Sprintf("random %d", seed), old: old, new: new})
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			have, err := fromTable(sc.old)
			if err != nil {
				t.Fatal(err)
			}
			want, err := fromTable(sc.new)
			if err != nil {
				t.Fatal(err)
			}
			model := have
			model.pods, model.routes, model.egress = maps.Clone(have.pods), maps.Clone(have.routes), maps.Clone(have.egress)
			ops := plan(have, want)
			for i, o := range ops {
				model.apply(o)
				for _, src := range srcs {
					for _, dst := range dsts {
						got, old, new := model.outcome(src, dst), tableOutcome(sc.old, src, dst), tableOutcome(sc.new, src, dst)
						if got != old && got != new && got != "drop" {
							t.Fatalf("after %s (%d of %d): %s → %s: %s; the old table says %s, the new one %s", o, i+1, len(ops), src, dst, got, old, new)
						}
					}
				}
			}
			if !maps.Equal(model.pods, want.pods) || !maps.Equal(model.routes, want.routes) || !maps.Equal(model.egress, want.egress) {
				t.Errorf("after the plan the maps do not hold the new table")
			}
			if again := plan(model, want); len(again) != 0 {
				t.Errorf("planning the same table again writes %d entries", len(again))
			}
		})
	}
}

func (s *state) apply(w write) {
	switch w := w.(type) {
	case putEgress:
		s.egress[w.id] = w.ip
	case deleteEgress:
		delete(s.egress, w.id)
	case putPod:
		s.pods[w.ip] = w.set
	case deletePod:
		delete(s.pods, w.ip)
	case replaceRoutes: // one write replaces a set's whole trie
		maps.DeleteFunc(s.routes, inSet(w.set))
		for k, v := range w.routes {
			s.routes[routeKey{set: w.set, dstKey: k}] = v
		}
	case deleteRoutes: // or removes it
		maps.DeleteFunc(s.routes, inSet(w.set))
	default:
		panic(fmt.Sprintf("the model has no case for a %T", w))
	}
}

func inSet(set uint32) func(routeKey, routeValue) bool {
	return func(k routeKey, _ routeValue) bool { return k.set == set }
}

// outcome is what egw_from_pod and egw_uplink_out do with the maps the model holds.
func (s *state) outcome(src, dst netip.Addr) string {
	set, ok := s.pods[src.As4()]
	if !ok {
		set = routing.UnknownSet
	}
	var best *routeKey
	for k := range s.routes {
		if k.set == set && k.prefix().Contains(dst) && (best == nil || k.Prefixlen > best.Prefixlen) {
			best = &k
		}
	}
	if best == nil {
		return "pass"
	}
	switch v := s.routes[*best]; v.Verdict {
	case verdictInCluster:
		return "pass"
	case verdictSteer:
		if ip, ok := s.egress[v.EgressID]; ok {
			return "steer " + ip.addr().String()
		}
	}
	return "drop"
}

// randomTables returns an old and a new table for the probe pods and destinations of
// restartTables: random policies over nested destinations, random selections, and
// either the same builder (a change while running) or a fresh one (a restart).
func randomTables(t *testing.T, seed int) (routing.Table, routing.Table) {
	r := rand.New(rand.NewPCG(uint64(seed), 2640))
	prefixes := []string{"0.0.0.0/0", "203.0.113.0/24", "203.0.113.0/25", "203.0.113.0/28", "203.0.113.16/28",
		"203.0.113.128/25", "198.19.0.0/16", "198.19.1.0/24"}
	ips := []string{"", "198.51.100.100", "198.51.100.101", "198.51.100.102"}
	policies := func() *routing.Policies {
		var ps []pol
		for i := range 4 {
			p := pol{name: fmt.Sprintf("p%d", i), age: r.IntN(3), egressIP: ips[r.IntN(len(ips))]}
			for _, d := range prefixes {
				if r.IntN(4) == 0 {
					p.dests = append(p.dests, d)
				}
			}
			ps = append(ps, p)
		}
		return compile(ps...)
	}
	pods := func() []routing.LocalPod {
		var out []routing.LocalPod
		for _, i := range r.Perm(4) {
			if r.IntN(5) == 0 {
				continue // not on the node
			}
			var sel []string
			for j := range 4 {
				if r.IntN(2) == 0 {
					sel = append(sel, fmt.Sprintf("p%d", j))
				}
			}
			out = append(out, pod(fmt.Sprintf("198.18.1.%d", i+1), sel...))
		}
		return out
	}
	b := routing.NewTableBuilder()
	old := build(t, b, policies(), pods()...)
	if r.IntN(2) == 0 {
		b = routing.NewTableBuilder()
	}
	return old, build(t, b, policies(), pods()...)
}
