package nodeagent

import (
	hb "github.com/egressgw/egressgw/apiserver/heartbeat"

	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/egressgw/egressgw/apiserver/apis/networking"
	"github.com/egressgw/egressgw/apiserver/routing"
	"github.com/egressgw/egressgw/bpf"
)

// The fakes of the kernel and the cluster share a recorder, which keeps the calls that
// change something, in order, so that a test can say what came before what.

// call is one call a fake took.
type call struct {
	op string // the method: "SetGrant", "ApplyNftables", "Reconcile", "Report", ...
	at time.Duration
	// ips are the IPs the call names: SetGrant's and DeleteGrant's, the egress IPs of
	// ApplyNftables' SNAT map, those Reconcile holds and those Report lists, AttachPod's
	// sources; sorted.
	ips     []netip.Addr
	ifindex int           // AttachPod's and AttachUplink's; EnsureSteering's uplink
	expires time.Duration // SetGrant's
	// lifetimes are Reconcile's.
	lifetimes map[netip.Addr]time.Duration
}

func (c call) String() string {
	s := c.op
	if c.ifindex != 0 {
		s += " " + strconv.Itoa(c.ifindex)
	}
	if c.ips != nil || c.op == "Reconcile" || c.op == "ApplyNftables" || c.op == "Report" {
		s += fmt.Sprint(" ", c.ips)
	}
	return s
}

type recorder struct {
	clock *fakeClock
	calls []call
}

func (r *recorder) add(c call) {
	c.at = r.clock.now()
	r.calls = append(r.calls, c)
}

// matcher picks calls out of a recording.
type matcher struct {
	what  string
	match func(call) bool
}

func op(name string) matcher {
	return matcher{name, func(c call) bool { return c.op == name }}
}

// naming is a call of the method that names ip.
func naming(name string, ip netip.Addr) matcher {
	return matcher{fmt.Sprintf("%s naming %s", name, ip), func(c call) bool { return c.op == name && slices.Contains(c.ips, ip) }}
}

// without is a call of the method that does not name ip.
func without(name string, ip netip.Addr) matcher {
	return matcher{fmt.Sprintf("%s without %s", name, ip), func(c call) bool { return c.op == name && !slices.Contains(c.ips, ip) }}
}

func attachUplink(ifindex int) matcher {
	return matcher{fmt.Sprintf("AttachUplink %d", ifindex), func(c call) bool { return c.op == "AttachUplink" && c.ifindex == ifindex }}
}

// index is the index of the first call that matches, from from on; -1 if none.
func (r *recorder) index(m matcher, from int) int {
	for i := from; i < len(r.calls); i++ {
		if m.match(r.calls[i]) {
			return i
		}
	}
	return -1
}

// before fails unless a call matching first comes before the first call matching then,
// from from on; both must be there.
func (r *recorder) before(t *testing.T, first, then matcher, from int) {
	t.Helper()
	i, j := r.index(first, from), r.index(then, from)
	if i < 0 || j < 0 || i > j {
		t.Errorf("want %s (call %d) before %s (call %d); the calls:\n%s", first.what, i, then.what, j, r.dump(from))
	}
}

func (r *recorder) dump(from int) string {
	var s string
	for i, c := range r.calls[from:] {
		s += fmt.Sprintf("  %d %v\n", from+i, c)
	}
	return s
}

func sortedIPs[V any](m map[netip.Addr]V) []netip.Addr {
	return slices.SortedFunc(maps.Keys(m), netip.Addr.Compare)
}

type fakeClock struct{ t time.Duration }

func (c *fakeClock) now() time.Duration { return c.t }

type fakeGrant struct {
	id      uint32
	expires time.Duration
}

// fakeDataplane keeps the grants and attachments as bpf.Dataplane's maps and links would.
type fakeDataplane struct {
	rec    *recorder
	grants map[netip.Addr]fakeGrant
	pods   map[int][]netip.Addr // attached veths and their sources
	table  routing.Table
	// syncErr and uplinksErr fail Sync and SetUplinks after they wrote, as a full map does.
	syncErr, uplinksErr error
	// podCIDRs and snatDsts are what a gateway may SNAT, as last written.
	podCIDRs []netip.Prefix
	snatDsts map[netip.Addr][]netip.Prefix
	// foreign are the other programs on each pod interface.
	foreign map[int][]bpf.ForeignProgram
	// routed and nodes are the routed way's maps, as last written.
	routed map[netip.Addr]bpf.Routed
	nodes  []netip.Addr
}

var _ dataplane = &fakeDataplane{}

func (d *fakeDataplane) Sync(t routing.Table) error {
	// The call names the pods the table parks in the unknown set.
	var parked []netip.Addr
	for ip, set := range t.Pods {
		if set == routing.UnknownSet {
			parked = append(parked, ip)
		}
	}
	d.rec.add(call{op: "Sync", ips: parked})
	d.table = t
	return d.syncErr
}

func (d *fakeDataplane) SetPodCIDRs(p []netip.Prefix) error {
	d.rec.add(call{op: "SetPodCIDRs"})
	d.podCIDRs = p
	return nil
}

func (d *fakeDataplane) SetSNATDestinations(m map[netip.Addr][]netip.Prefix) error {
	d.rec.add(call{op: "SetSNATDestinations", ips: sortedIPs(m)})
	d.snatDsts = m
	return nil
}

func (d *fakeDataplane) SetGrant(ip netip.Addr, id uint32, expires time.Duration) error {
	d.rec.add(call{op: "SetGrant", ips: []netip.Addr{ip}, expires: expires})
	d.grants[ip] = fakeGrant{id: id, expires: expires}
	return nil
}

func (d *fakeDataplane) DeleteGrant(ip netip.Addr) error {
	d.rec.add(call{op: "DeleteGrant", ips: []netip.Addr{ip}})
	delete(d.grants, ip)
	return nil
}

func (d *fakeDataplane) Grants() (map[netip.Addr]uint32, error) {
	out := map[netip.Addr]uint32{}
	for ip, g := range d.grants {
		out[ip] = g.id
	}
	return out, nil
}

func (d *fakeDataplane) Numbering() (map[netip.Addr]uint32, map[uint32]netip.Addr, error) {
	return d.table.Pods, d.table.Egress, nil
}

func (d *fakeDataplane) AttachPod(ifindex int, sources []netip.Addr) error {
	d.rec.add(call{op: "AttachPod", ifindex: ifindex, ips: slices.Clone(sources)})
	d.pods[ifindex] = slices.Clone(sources)
	return nil
}

func (d *fakeDataplane) DetachPod(ifindex int) error {
	d.rec.add(call{op: "DetachPod", ifindex: ifindex})
	delete(d.pods, ifindex)
	return nil
}

func (d *fakeDataplane) AttachedPods() ([]int, error) { return slices.Sorted(maps.Keys(d.pods)), nil }

func (d *fakeDataplane) ForeignPrograms(ifindex int) ([]bpf.ForeignProgram, bool, error) {
	return d.foreign[ifindex], false, nil
}

func (d *fakeDataplane) AttachUplink(ifindex int) error {
	d.rec.add(call{op: "AttachUplink", ifindex: ifindex})
	return nil
}

func (d *fakeDataplane) SetUplinks(u map[netip.Addr]bpf.Uplink) error {
	d.rec.add(call{op: "SetUplinks", ips: sortedIPs(u)})
	return d.uplinksErr
}

func (d *fakeDataplane) SetRouted(r map[netip.Addr]bpf.Routed) error {
	d.rec.add(call{op: "SetRouted", ips: sortedIPs(r)})
	d.routed = maps.Clone(r)
	return nil
}

func (d *fakeDataplane) SetNodes(addrs []netip.Addr) error {
	d.rec.add(call{op: "SetNodes", ips: slices.Clone(addrs)})
	d.nodes = slices.Clone(addrs)
	return nil
}

func (d *fakeDataplane) Stats() (map[string]uint64, error) { return nil, nil }

// fakeFloatingIPs holds what it is told to, on the interfaces it is given.
type fakeFloatingIPs struct {
	rec    *recorder
	ifaces []Interface
	held   map[netip.Addr]time.Duration
}

var _ floatingIPs = &fakeFloatingIPs{}

func (f *fakeFloatingIPs) Reconcile(want map[netip.Addr]time.Duration) error {
	f.rec.add(call{op: "Reconcile", ips: sortedIPs(want), lifetimes: maps.Clone(want)})
	f.held = maps.Clone(want)
	return nil
}

func (f *fakeFloatingIPs) Interfaces() ([]Interface, error) { return f.ifaces, nil }

// fakeHost has the uplinks and pod veths it is given.
type fakeHost struct {
	rec     *recorder
	uplinks map[string]bpf.Uplink
	pods    map[netip.Addr]int
	// loose are the uplinks EnsureSteering was last given: their rp_filter is loosened.
	loose []int
	nft   nftState
	// listing is the kernel's table as ListNftables shows it; a test empties it to flush.
	listing string
	// flows is the conntrack table; DeleteFlows removes from it.
	flows []Flow
	// routes are the node's routes to egress IPs on other segments.
	routes map[netip.Addr]bpf.Routed
}

var _ host = &fakeHost{}

func (h *fakeHost) EnsureSteering(uplink int, uplinks []int) error {
	h.rec.add(call{op: "EnsureSteering", ifindex: uplink})
	h.loose = slices.Clone(uplinks)
	return nil
}

func (h *fakeHost) ApplyNftables(n nftState) error {
	h.rec.add(call{op: "ApplyNftables", ips: slices.SortedFunc(maps.Values(n.SNAT), netip.Addr.Compare)})
	h.nft = n
	h.listing = n.render()
	return nil
}

func (h *fakeHost) ListNftables() (string, error) { return h.listing, nil }

func (h *fakeHost) RouteTo(ip netip.Addr) (bpf.Routed, bool) {
	r, ok := h.routes[ip]
	return r, ok
}

func (h *fakeHost) PodLink(ip netip.Addr) (int, bool) {
	i, ok := h.pods[ip]
	return i, ok
}

func (h *fakeHost) Uplink(name string) (bpf.Uplink, error) {
	u, ok := h.uplinks[name]
	if !ok {
		return bpf.Uplink{}, fmt.Errorf("no interface %s", name)
	}
	return u, nil
}

func (h *fakeHost) SNATConnections() (map[netip.Addr]int, error) { return nil, nil }

func (h *fakeHost) DeleteFlows(stale func(Flow) bool) (int, error) {
	h.rec.add(call{op: "DeleteFlows"})
	before := len(h.flows)
	h.flows = slices.DeleteFunc(h.flows, stale)
	return before - len(h.flows), nil
}

// fakeStatus keeps the last status written; err fails the writes.
type fakeStatus struct {
	rec    *recorder
	last   nodeStatus
	writes int
	err    error
}

var _ statusWriter = &fakeStatus{}

func (s *fakeStatus) Report(_ context.Context, st nodeStatus) error {
	s.rec.add(call{op: "Report", ips: slices.Clone(st.Held)})
	if s.err != nil {
		return s.err
	}
	s.last = st
	s.writes++
	return nil
}

func (s *fakeStatus) PublishKeys(_ context.Context, keys []string) error {
	s.rec.add(call{op: "PublishKeys"})
	if s.err != nil {
		return s.err
	}
	s.last.HeartbeatKeys = keys
	return nil
}

// fakeCluster is the cluster as a pass reads it: the snapshot it is given.
type fakeCluster struct{ snap snapshot }

var _ clusterView = &fakeCluster{}

func (c *fakeCluster) Start(context.Context, func()) error { return nil }
func (c *fakeCluster) Snapshot() (snapshot, error)         { return c.snap, nil }
func (c *fakeCluster) GrantGeneration() int64              { return c.snap.generation }
func (c *fakeCluster) Leader() (hb.Leader, bool)           { return hb.Leader{}, false }

// fakeLeases keeps one Lease, as the API server would; err fails the writes.
type fakeLeases struct {
	lease  *coordinationv1.Lease
	rv     int
	writes int
	err    error
}

var _ leaseClient = &fakeLeases{}

func (l *fakeLeases) Get(_ context.Context, name string) (*coordinationv1.Lease, error) {
	if l.lease == nil {
		return nil, apierrors.NewNotFound(coordinationv1.Resource("leases"), name)
	}
	return l.lease.DeepCopy(), nil
}

func (l *fakeLeases) Create(_ context.Context, lease *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	return l.write(lease)
}

func (l *fakeLeases) Update(_ context.Context, lease *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	return l.write(lease)
}

func (l *fakeLeases) write(lease *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	if l.err != nil {
		return nil, l.err
	}
	if lease.Namespace != networking.NodeNamespace {
		return nil, fmt.Errorf("lease in namespace %q, want %q", lease.Namespace, networking.NodeNamespace)
	}
	l.rv++
	l.writes++
	l.lease = lease.DeepCopy()
	l.lease.ResourceVersion = strconv.Itoa(l.rv)
	return l.lease.DeepCopy(), nil
}
