package nodeagent

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/egressgw/egressgw/apiserver/routing"
)

var (
	fePod    = netip.MustParseAddr("198.18.1.10")
	external = netip.MustParseAddr("203.0.113.10")
	masqIP   = netip.MustParseAddr("198.51.100.11")
)

// flows are the conntrack entries of a node whose pod alice/fe (198.18.1.10) talks to
// 203.0.113.10, which the spec's policy steers, and to 8.8.8.8, which it does not.
func flows() []Flow {
	return []Flow{
		{Src: fePod, Dst: external, ReplyDst: fePod},                                          // steered: identity SNAT
		{Src: fePod, Dst: netip.MustParseAddr("8.8.8.8"), ReplyDst: masqIP},                   // masqueraded
		{Src: fePod, Dst: netip.MustParseAddr("198.18.2.10"), ReplyDst: fePod},                // in the cluster
		{Zone: ctZone, Src: netip.MustParseAddr("198.18.2.10"), Dst: external, ReplyDst: ip1}, // SNATed here to ip1
		{Zone: ctZone, Src: netip.MustParseAddr("198.18.2.11"), Dst: external, ReplyDst: ip2}, // SNATed here to ip2
	}
}

// TestSweepUnselected: a change that stops steering a flow deletes its identity-SNAT
// entry, after the maps hold the new table; every other entry stays. Without the sweep,
// the pod's next packets would leave the node with the pod's raw IP.
func TestSweepUnselected(t *testing.T) {
	relabel := func(s snapshot) snapshot {
		s.pods[0].Labels = map[string]string{"role": "backend"}
		return s
	}
	noPolicy := func(s snapshot) snapshot { s.policies = nil; return s }
	otherDst := func(s snapshot) snapshot {
		s.policies[0].Spec.Destinations[0].CIDR = "203.0.113.128/25"
		return s
	}
	podGone := func(s snapshot) snapshot { s.pods = nil; return s }
	tests := []struct {
		name   string
		change func(snapshot) snapshot
		// deleted: the steered entry goes.
		deleted bool
	}{
		{name: "nothing changes", change: func(s snapshot) snapshot { return s }},
		{name: "the pod is relabelled", change: relabel, deleted: true},
		{name: "the policy is deleted", change: noPolicy, deleted: true},
		{name: "the destinations no longer hold it", change: otherDst, deleted: true},
		{name: "the pod is gone", change: podGone, deleted: true},
	}
	all := []netip.Addr{ip1, ip2}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			r.renew(t)
			r.pass(t, cluster(1, all))
			r.host.flows = flows()
			from := r.pass(t, tt.change(cluster(1, all)))
			want := flows()
			if tt.deleted {
				want = want[1:]
				// Parked (its policy destinations drop) before its entries go, and only
				// then moved to its new routes: no packet leaves on a stale entry.
				if r.table(tt.change(cluster(1, all))).Pods[fePod] != routing.UnknownSet {
					r.rec.before(t, naming("Sync", fePod), op("DeleteFlows"), from)
					r.rec.before(t, op("DeleteFlows"), without("Sync", fePod), from)
				}
			}
			if !slices.Equal(r.host.flows, want) {
				t.Errorf("conntrack holds %v, want %v", r.host.flows, want)
			}
		})
	}
}

// table is the table a pass on s builds.
func (r *rig) table(s snapshot) routing.Table {
	d, err := s.desired(routing.NewTableBuilder())
	if err != nil {
		panic(err)
	}
	return d.table
}

// TestSweepFirstPass: an agent that starts does not know what was steered before it, so
// it checks every local pod's identity-SNAT entries against its first table.
func TestSweepFirstPass(t *testing.T) {
	r := newRig(t)
	r.renew(t)
	r.host.flows = flows()
	s := cluster(1, []netip.Addr{ip1})
	s.pods[0].Labels = nil // unselected while no agent ran
	r.pass(t, s)
	if want := flows()[1:]; !slices.Equal(r.host.flows, want) {
		t.Errorf("conntrack holds %v, want %v", r.host.flows, want)
	}
}

// TestSweepLostGrant: an egress IP this node lets go loses its SNAT entries here, after
// its grant is gone; the entries of the IPs it keeps stay.
func TestSweepLostGrant(t *testing.T) {
	r := newRig(t)
	r.renew(t)
	all := []netip.Addr{ip1, ip2}
	r.pass(t, cluster(1, all, ip1, ip2))
	r.host.flows = flows()
	r.clock.t += 100 * time.Millisecond
	from := r.pass(t, cluster(2, all, ip1))
	r.rec.before(t, naming("DeleteGrant", ip2), op("DeleteFlows"), from)
	want := slices.DeleteFunc(flows(), func(f Flow) bool { return f.ReplyDst == ip2 })
	if !slices.Equal(r.host.flows, want) {
		t.Errorf("conntrack holds %v, want %v", r.host.flows, want)
	}
}
