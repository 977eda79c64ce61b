package nodeagent

import (
	"context"
	"maps"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"

	"github.com/egressgw/egressgw/apiserver/apis/networking"
	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/apiserver/routing"
	"github.com/egressgw/egressgw/bpf"
)

var (
	ip1 = netip.MustParseAddr("198.51.100.101")
	ip2 = netip.MustParseAddr("198.51.100.102")
	ip3 = netip.MustParseAddr("198.51.100.103")
	ip4 = netip.MustParseAddr("198.51.100.104")
	// nodeIP is worker1's InternalIP, on eth0.
	nodeIP = netip.MustParseAddr("198.51.100.11")
)

const (
	eth0     = 2 // the uplink's ifindex
	feVeth   = 7 // the veth of pod alice/fe
	nodeName = "worker1"
)

// rig is an agent on fakes, whose calls one recorder keeps.
type rig struct {
	a      *Agent
	rec    *recorder
	clock  *fakeClock
	view   *fakeCluster
	dp     *fakeDataplane
	fips   *fakeFloatingIPs
	host   *fakeHost
	status *fakeStatus
	leases *fakeLeases
}

func newRig(t *testing.T) *rig {
	t.Helper()
	opts := NewOptions()
	opts.NodeName, opts.Heartbeat.ControllerLease = nodeName, "" // Lease renewals only
	if err := opts.validComplete(); err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: 100 * time.Second}
	rec := &recorder{clock: clock}
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	r := &rig{
		rec: rec, clock: clock, view: &fakeCluster{},
		dp: &fakeDataplane{rec: rec, grants: map[netip.Addr]fakeGrant{}, pods: map[int][]netip.Addr{}},
		fips: &fakeFloatingIPs{rec: rec, ifaces: []Interface{{Name: "eth0", MAC: mac.String(),
			Subnets: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}}}},
		host: &fakeHost{rec: rec, uplinks: map[string]bpf.Uplink{"eth0": {Ifindex: eth0, MAC: mac}},
			pods: map[netip.Addr]int{netip.MustParseAddr("198.18.1.10"): feVeth}},
		status: &fakeStatus{rec: rec},
		leases: &fakeLeases{},
	}
	var err error
	r.a, err = newAgent(*opts, api{view: r.view, leases: r.leases, status: r.status},
		kernel{dp: r.dp, fips: r.fips, host: r.host, now: clock.now}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// renew renews the heartbeat Lease now: the node is granted its IPs for a lease from now.
func (r *rig) renew(t *testing.T) {
	t.Helper()
	if err := r.a.grants.beat.renew(context.Background(), true); err != nil {
		t.Fatal(err)
	}
}

// pass runs a pass on s and returns the index of its first call.
func (r *rig) pass(t *testing.T, s snapshot) int {
	t.Helper()
	r.view.snap = s
	from := len(r.rec.calls)
	if err := r.a.pass(context.Background()); err != nil {
		t.Fatalf("pass: %v", err)
	}
	return from
}

// cluster is a snapshot of one NetworkGatewayGroup with the floating IPs gatewayIPs, a
// policy that sends pod alice/fe on worker1 through it, and this node's grants of
// generation: granted.
func cluster(generation int64, gatewayIPs []netip.Addr, granted ...netip.Addr) snapshot {
	g := routing.Gateway{Ref: networking.ObjectRef{Kind: networking.KindNetworkGatewayGroup, Namespace: "kube-system", Name: "default"},
		Placed: map[string]string{}}
	for _, ip := range gatewayIPs {
		g.FloatingIPs = append(g.FloatingIPs, ip.String())
		g.Placed[ip.String()] = "worker2"
	}
	for _, ip := range granted {
		g.Placed[ip.String()] = nodeName
	}
	s := snapshot{
		node:       nodeName,
		policies:   []*v1.EgressNATPolicy{specPolicy()},
		gateways:   []routing.Gateway{g},
		pods:       []*corev1.Pod{pod("alice", "fe", "198.18.1.10", map[string]string{"role": "frontend"})},
		namespaces: map[string]map[string]string{"alice": {"user": "alice"}},
		cluster:    []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15")},
		podCIDRs:   []netip.Prefix{netip.MustParsePrefix("198.18.1.0/24")},
		nodeIPs:    []netip.Addr{nodeIP},
		generation: generation,
	}
	for _, ip := range granted {
		s.granted = append(s.granted, ip.String())
	}
	return s
}

// TestPassTakesIPsInOrder: when a pass takes granted IPs, the uplink programs are on and
// the steering rules in before anything depends on them, what a gateway may SNAT is
// written, and each IP is known to the nft SNAT map, then granted in BPF, then added as
// an address: a packet marked for an IP always finds its SNAT address, and traffic never
// reaches an IP the dataplane has no grant for.
func TestPassTakesIPsInOrder(t *testing.T) {
	all := []netip.Addr{ip1, ip2, ip3}
	tests := []struct {
		name string
		// before runs before the pass that takes want.
		before func(*testing.T, *rig)
		snap   snapshot
		want   []netip.Addr
	}{
		{name: "the first pass", snap: cluster(1, all, ip1, ip2), want: []netip.Addr{ip1, ip2}},
		{
			// The grant comes before the informer has the gateway: ip4 is not staged, so
			// only the nft write before the grant makes it known.
			name: "an IP granted before its gateway is seen", snap: cluster(1, []netip.Addr{ip1, ip3}, ip1, ip4),
			want: []netip.Addr{ip1, ip4},
		},
		{
			// A handover: the IP was staged by an earlier pass, so the nft table needs no
			// write before the grant.
			name:   "an IP granted after it was staged",
			before: func(t *testing.T, r *rig) { r.pass(t, cluster(1, all)) },
			snap:   cluster(2, all, ip2), want: []netip.Addr{ip2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			r.renew(t)
			if tt.before != nil {
				tt.before(t, r)
			}
			r.pass(t, tt.snap)
			// The rules hold from the agent's first call on: an earlier pass may have
			// done the first half.
			r.rec.before(t, op("EnsureSteering"), op("AttachPod"), 0)
			for _, ip := range tt.want {
				r.rec.before(t, naming("ApplyNftables", ip), naming("SetGrant", ip), 0)
				r.rec.before(t, op("SetPodCIDRs"), naming("SetGrant", ip), 0)
				r.rec.before(t, op("SetSNATDestinations"), naming("SetGrant", ip), 0)
				r.rec.before(t, naming("SetGrant", ip), naming("Reconcile", ip), 0)
				r.rec.before(t, attachUplink(eth0), naming("Reconcile", ip), 0)
			}
			if got := sortedIPs(r.fips.held); !slices.Equal(got, tt.want) {
				t.Errorf("holding %v, want %v", got, tt.want)
			}
			if got := r.status.last.Held; !slices.Equal(got, tt.want) || r.status.last.ObservedGeneration != tt.snap.generation {
				t.Errorf("reported %v of generation %d, want %v of %d", got, r.status.last.ObservedGeneration, tt.want, tt.snap.generation)
			}
			if len(r.dp.pods[feVeth]) == 0 {
				t.Errorf("pod alice/fe's veth has no program")
			}
		})
	}
}

// TestPassLetsIPsGoInOrder: when a pass lets an IP go, its address goes first, then its
// BPF grant; the report says so only after the address is gone (the controller then
// grants it elsewhere), and the nft SNAT map forgets the IP only after its BPF grant is
// gone and the report is written.
func TestPassLetsIPsGoInOrder(t *testing.T) {
	all := []netip.Addr{ip1, ip2, ip3}
	tests := []struct {
		name string
		snap snapshot // after a pass that took ip1 and ip2
		// forgotten: the nft map no longer has ip2 (it is no IP this node could be granted).
		forgotten bool
	}{
		{name: "the gateway drops the IP", snap: cluster(2, []netip.Addr{ip1, ip3}, ip1), forgotten: true},
		{name: "the gateway is deleted", snap: func() snapshot { s := cluster(2, nil, ip1); s.gateways = nil; return s }(), forgotten: true},
		{name: "the IP moves to another node", snap: cluster(2, all, ip1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			r.renew(t)
			r.pass(t, cluster(1, all, ip1, ip2))
			r.clock.t += 100 * time.Millisecond
			from := r.pass(t, tt.snap)
			r.rec.before(t, without("Reconcile", ip2), naming("DeleteGrant", ip2), from)
			r.rec.before(t, without("Reconcile", ip2), without("Report", ip2), from)
			if tt.forgotten {
				r.rec.before(t, naming("DeleteGrant", ip2), without("ApplyNftables", ip2), from)
				r.rec.before(t, without("Report", ip2), without("ApplyNftables", ip2), from)
			} else if i := r.rec.index(op("ApplyNftables"), from); i >= 0 {
				t.Errorf("the nft table was written though it stays the same: call %d %v", i, r.rec.calls[i])
			}
			if slices.Contains(sortedIPs(r.fips.held), ip2) || r.dp.grants[ip2] != (fakeGrant{}) || slices.Contains(r.status.last.Held, ip2) {
				t.Errorf("ip2 still held (%v), granted (%v) or reported (%v)", sortedIPs(r.fips.held), r.dp.grants, r.status.last.Held)
			}
			if inNft := slices.Contains(slices.Collect(maps.Values(r.host.nft.SNAT)), ip2); inNft == tt.forgotten {
				t.Errorf("ip2 in the nft map: %v, want %v", inNft, !tt.forgotten)
			}
		})
	}
}

// TestReportWrittenOnChange: a pass that changes nothing writes no report, and one whose
// write failed writes it on the next pass.
func TestReportWrittenOnChange(t *testing.T) {
	r := newRig(t)
	r.renew(t)
	all := []netip.Addr{ip1, ip2}
	r.pass(t, cluster(1, all, ip1))
	r.pass(t, cluster(1, all, ip1))
	if r.status.writes != 1 {
		t.Errorf("%d reports for two passes with one outcome, want 1", r.status.writes)
	}
	r.status.err = context.DeadlineExceeded
	r.pass(t, cluster(2, all, ip1, ip2))
	r.status.err = nil
	r.pass(t, cluster(2, all, ip1, ip2))
	if r.status.writes != 2 || !slices.Equal(r.status.last.Held, all) || r.status.last.ObservedGeneration != 2 {
		t.Errorf("after a failed write, %d reports, the last %+v; want the second written", r.status.writes, r.status.last)
	}
}
