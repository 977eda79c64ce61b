package nodeagent

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"k8s.io/klog/v2"

	"github.com/egressgw/egressgw/apiserver/routing"
)

// NAT happens on a flow's first packet; later packets take what conntrack remembers. So a
// change of the tables that unselects a flow, or a grant that goes, leaves conntrack
// entries that no longer say what the dataplane would decide now:
//
//   - a steered flow's entry on the source node (zone 0) keeps the identity SNAT that
//     kept the pod's IP on the way to the gateway. Unselected, the flow is no longer
//     steered, and without this sweep its packets would leave the node with the raw pod
//     IP, because the CNI's masquerade never runs for a flow that has an entry;
//   - a gateway's entries in its zone (ctZone) for an egress IP it no longer holds would
//     SNAT to that IP again, with stale ports, should the IP come back.
//
// The sweeper deletes exactly those entries once the kernel can no longer steer them: the
// pods whose routes changed are parked in the unknown set first (their policy
// destinations drop), the entries go, and only then do the maps take the new table. A
// gateway's entries go after the grant is gone. A flow whose entry is deleted
// gets a new one on its next packet, decided afresh: masqueraded, steered or dropped.

// Flow is a conntrack entry as the sweep needs it: its zone and the addresses of both
// directions.
type Flow struct {
	Zone uint16
	// Src and Dst are the original direction's (the pod's packet as it arrived).
	Src, Dst netip.Addr
	// ReplyDst is where replies go: Src unless the flow was SNATed to another address.
	ReplyDst netip.Addr
}

// conntrackCleaner deletes conntrack entries.
type conntrackCleaner interface {
	// DeleteFlows deletes the IPv4 conntrack entries for which stale says true, and
	// says how many it deleted.
	DeleteFlows(stale func(Flow) bool) (int, error)
}

// flowSweeper remembers what the conntrack entries were made under: the last table the
// maps held, the cluster's CIDRs, and the IPs this node held.
type flowSweeper struct {
	ct      conntrackCleaner
	m       *metrics
	last    *routing.Table
	cluster []netip.Prefix
	held    map[netip.Addr]bool
}

// changed are the pods whose routes differ from the last table synced, and whether that
// is known: on the agent's first pass, what was steered before it is unknown, so every
// local pod is in it.
func (s *flowSweeper) changed(table routing.Table, cluster []netip.Prefix) (map[netip.Addr]bool, bool) {
	if s.last == nil || !slices.Equal(s.cluster, cluster) {
		all := map[netip.Addr]bool{}
		for ip := range table.Pods {
			all[ip] = true
		}
		return all, false
	}
	return rerouted(*s.last, table), true
}

// synced remembers the table the maps hold now.
func (s *flowSweeper) synced(table routing.Table, cluster []netip.Prefix) {
	s.last, s.cluster = &table, slices.Clone(cluster)
}

// sweep deletes the steered flows of the affected pods that table does not steer. It
// must run once no packet of theirs can be steered any more: an entry deleted earlier
// could be made again, identity SNAT and all, by a packet the old maps still steered.
func (s *flowSweeper) sweep(affected map[netip.Addr]bool, table routing.Table, cluster []netip.Prefix) error {
	if len(affected) == 0 {
		return nil
	}
	n, err := s.ct.DeleteFlows(unsteered(affected, table, cluster))
	s.count("unsteered", n)
	if err != nil {
		return fmt.Errorf("deleting the conntrack entries of flows no longer steered: %w", err)
	}
	if n > 0 {
		klog.V(2).InfoS("Deleted the conntrack entries of flows no longer steered", "entries", n)
	}
	return nil
}

// parked is table with the affected pods in the unknown set, whose routes drop every
// policy destination and pass the rest: while their stale entries are deleted, no packet
// of a flow they steered leaves on its entry with the pod's IP, and none makes a new one.
func parked(table routing.Table, affected map[netip.Addr]bool) routing.Table {
	out := table
	out.Pods = maps.Clone(table.Pods)
	for ip := range affected {
		if _, ok := out.Pods[ip]; ok {
			out.Pods[ip] = routing.UnknownSet
		}
	}
	return out
}

// grantsChanged deletes the entries of this node's zone for the egress IPs it held and
// holds no more. It must run after the grants are gone from the kernel.
func (s *flowSweeper) grantsChanged(held []netip.Addr) error {
	now := map[netip.Addr]bool{}
	for _, ip := range held {
		now[ip] = true
	}
	var gone []netip.Addr
	for ip := range s.held {
		if !now[ip] {
			gone = append(gone, ip)
		}
	}
	s.held = now
	if len(gone) == 0 {
		return nil
	}
	n, err := s.ct.DeleteFlows(lostGrant(gone))
	s.count("grant-lost", n)
	if err != nil {
		return fmt.Errorf("deleting the conntrack entries SNATed to %v: %w", gone, err)
	}
	klog.V(2).InfoS("Deleted the conntrack entries of egress IPs no longer held", "ips", gone, "entries", n)
	return nil
}

func (s *flowSweeper) count(reason string, n int) {
	if s.m != nil && n > 0 {
		s.m.conntrackDeleted.WithLabelValues(reason).Add(float64(n))
	}
}

// rerouted are the pods whose routes differ between the tables, or that left. A pod new
// in table has no flows the old maps steered.
func rerouted(prev, table routing.Table) map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	for ip, was := range prev.Pods {
		is, ok := table.Pods[ip]
		if !ok || !slices.EqualFunc(prev.Sets[was], table.Sets[is], sameRoute) {
			out[ip] = true
		}
	}
	return out
}

// sameRoute compares what the dataplane holds of a route, not the policy it came from
// (compiled afresh each pass).
func sameRoute(a, b routing.TableRoute) bool {
	return a.Prefix == b.Prefix && a.Verdict == b.Verdict && a.EgressID == b.EgressID
}

// unsteered says which zone-0 entries are stale: a flow of an affected pod, to a
// destination outside the cluster, that kept the pod's IP (the identity SNAT of a
// steered flow), and that table does not steer. A masqueraded flow (ReplyDst is the
// node's IP) is left alone: its entry is what the CNI decided.
func unsteered(affected map[netip.Addr]bool, table routing.Table, cluster []netip.Prefix) func(Flow) bool {
	return func(f Flow) bool {
		if f.Zone != 0 || f.ReplyDst != f.Src || !affected[f.Src] {
			return false
		}
		for _, c := range cluster {
			if c.Contains(f.Dst) {
				return false
			}
		}
		set, is := table.Pods[f.Src]
		if !is {
			return true
		}
		// The longest prefix that holds dst, as the BPF trie finds it.
		r, found := routing.Lookup(table.Sets[set], f.Dst)
		return !found || r.Verdict != routing.SNAT
	}
}

// lostGrant says which entries of the gateway's zone are SNATed to one of ips.
func lostGrant(ips []netip.Addr) func(Flow) bool {
	return func(f Flow) bool {
		return f.Zone == ctZone && slices.Contains(ips, f.ReplyDst)
	}
}
