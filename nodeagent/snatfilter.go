package nodeagent

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
)

// snatFilterWriter writes what this node, as a gateway, may SNAT: the pod CIDRs of every
// node, every egress IP's policy destinations, and the node addresses routed packets come
// from. It writes only what changed since its
// last successful write; a failed one (a full map among them) is written again on the
// next pass.
type snatFilterWriter struct {
	dp snatFilter
	// sources and destinations are what the last successful writes wrote; nil: write.
	sources      []netip.Prefix
	destinations map[netip.Addr][]netip.Prefix
	nodes        []netip.Addr
}

func (w *snatFilterWriter) apply(sources []netip.Prefix, destinations map[netip.Addr][]netip.Prefix, nodes []netip.Addr) error {
	if sources == nil {
		sources = []netip.Prefix{}
	}
	if destinations == nil {
		destinations = map[netip.Addr][]netip.Prefix{}
	}
	var errs []error
	if w.sources == nil || !slices.Equal(w.sources, sources) {
		w.sources = nil
		if err := w.dp.SetPodCIDRs(sources); err != nil {
			errs = append(errs, fmt.Errorf("programming the pod CIDRs a gateway SNATs from: %w", err))
		} else {
			w.sources = slices.Clone(sources)
		}
	}
	if w.destinations == nil || !maps.EqualFunc(w.destinations, destinations, slices.Equal) {
		w.destinations = nil
		if err := w.dp.SetSNATDestinations(destinations); err != nil {
			errs = append(errs, fmt.Errorf("programming the destinations a gateway SNATs to: %w", err))
		} else {
			w.destinations = maps.Clone(destinations)
		}
	}
	if nodes == nil {
		nodes = []netip.Addr{}
	}
	if w.nodes == nil || !slices.Equal(w.nodes, nodes) {
		w.nodes = nil
		if err := w.dp.SetNodes(nodes); err != nil {
			errs = append(errs, fmt.Errorf("programming the node addresses a gateway takes routed packets from: %w", err))
		} else {
			w.nodes = slices.Clone(nodes)
		}
	}
	return errors.Join(errs...)
}
