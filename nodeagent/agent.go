package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"

	"github.com/egressgw/egressgw/apiserver/routing"
)

// Agent is one node's agent. Its loop runs passes, and each pass has its parts write the
// kernel in the order that keeps every packet on its egress IP (see pass).
type Agent struct {
	opts    Options
	cluster clusterView
	tables  policyTables
	attach  *attacher
	grants  *grantKeeper
	nft     *nftWriter
	snat    *snatFilterWriter
	report  *reporter
	flows   *flowSweeper
	// standbys copy conntrack entries to and from other gateways (standby.go); nil
	// without the copy.
	standbys *standbys
	wake     wakeups
	m        *metrics
	// notReady says why the last pass did not program everything (nil inside when it
	// did); nil before the first pass.
	notReady atomic.Pointer[error]
	// full, uncovered and unreachable log the CapacityExceeded, PodsCovered and
	// EgressReachable messages when they change.
	full, uncovered, unreachable conditionLog
}

// policyTables number the dataplane's policy tables (snapshot.desired builds them with
// builder) and write them.
type policyTables struct {
	builder *routing.TableBuilder
	maps    policyMaps
}

// wakeups wake the agent's loop; many before the loop wakes make one wake-up.
type wakeups struct {
	// pass asks for a pass soon.
	pass chan struct{}
	// refresh asks for the held grants to be extended in the kernel: cheaper than a
	// pass, and it comes with every heartbeat answered.
	refresh chan struct{}
}

func (w wakeups) kick()        { signal(w.pass) }
func (w wakeups) refreshSoon() { signal(w.refresh) }

// newAgent builds an agent from what it reads and writes: the cluster, and the node's
// kernel. opts must be validated and completed.
func newAgent(opts Options, c api, k kernel, reg prometheus.Registerer) (*Agent, error) {
	a := &Agent{
		opts:    opts,
		cluster: c.view,
		tables:  policyTables{builder: routing.NewTableBuilder(), maps: k.dp},
		attach:  &attacher{dp: k.dp, host: k.host, ifaces: k.fips, chosen: len(opts.parsed.interfaces) > 0, now: k.now, resync: opts.Resync},
		snat:    &snatFilterWriter{dp: k.dp},
		report:  &reporter{w: c.status},
		flows:   &flowSweeper{ct: k.host},
		wake:    wakeups{pass: make(chan struct{}, 1), refresh: make(chan struct{}, 1)},
		full: conditionLog{key: "capacityExceeded", problem: "The dataplane's maps refuse entries; what they refuse fails closed",
			resolved: "The dataplane's maps hold everything again"},
		uncovered: conditionLog{key: "podsUncovered", problem: "Pods of this node are outside the fail-closed backstop or the gateways' source filter",
			resolved: "Every pod of this node is covered again"},
		unreachable: conditionLog{key: "podsUnreachable", problem: "Selected pods of this node have an egress IP it cannot reach (on no subnet of its interfaces, and no route to it); their selected traffic is dropped",
			resolved: "Every selected pod of this node reaches its egress IPs again"},
	}
	a.m = newMetrics(reg, k.dp, k.host)
	a.flows.m = a.m
	a.nft = &nftWriter{host: k.host, node: opts.NodeName, m: a.m, now: k.now, resync: opts.Resync}
	g := &grantKeeper{
		beat:   &heartbeat{leases: c.leases, node: opts.NodeName, duration: opts.Heartbeat.LeaseDuration, now: k.now},
		timing: opts.Heartbeat,
		ids:    routing.NewIDs(1, routing.MaxEgressIDs),
		dp:     k.dp, fips: k.fips, wake: a.wake, m: a.m,
	}
	if opts.Heartbeat.ControllerLease != "" {
		keys, err := newBeatKeys(opts.Heartbeat.KeyRotation)
		if err != nil {
			return nil, err
		}
		a.report.keys = keys
		reads := newDirectReader(c.direct, a.wake.kick, a.m)
		g.direct = &directChannel{reads: reads, publish: a.report.publishKeys, beats: &beater{
			node: opts.NodeName, interval: opts.Heartbeat.Interval, lease: opts.Heartbeat.LeaseDuration, now: k.now,
			beat: g.beat, keys: keys, leader: c.view.Leader, m: a.m,
			generation: c.view.GrantGeneration,
			extended:   g.extended,
			behind:     reads.askGrants,
			unanswered: reads.askLeader,
			republish:  a.wake.kick,
		}}
	}
	a.grants = g
	return a, nil
}

// loop runs passes: on every change, on every renewal (grants move), when the grant is
// about to lapse, when a program comes onto or goes off a pod's interface (redirect.go),
// and every resync period to catch what the kernel lost.
func (a *Agent) loop(ctx context.Context) {
	resync := time.NewTicker(a.opts.Resync)
	defer resync.Stop()
	lapse := time.NewTimer(time.Hour)
	defer lapse.Stop()
	programs := time.NewTicker(programCheck)
	defer programs.Stop()
	for {
		if err := a.pass(ctx); err != nil {
			klog.ErrorS(err, "Dataplane pass failed; retrying", "node", a.opts.NodeName)
			a.m.passErrors.Inc()
			time.AfterFunc(time.Second, a.wake.kick)
		}
		// Wake up exactly when the grant lapses, to drop the floating IPs on time.
		if left := a.grants.left(); left > 0 {
			lapse.Reset(left)
		}
		for again := true; again; {
			again = false
			select {
			case <-ctx.Done():
				return
			case <-a.wake.pass:
			case <-resync.C:
			case <-lapse.C:
			case <-programs.C:
				// Once a second: other programs on pod interfaces, and the freshness
				// of the standbys' copies, each calling for a pass when it changed.
				again = !a.attach.foreignChanged() && !a.standbys.copiesChanged(time.Now())
			case <-a.wake.refresh:
				if err := a.grants.refresh(); err != nil {
					klog.ErrorS(err, "Extending the grants in the kernel failed; a pass follows", "node", a.opts.NodeName)
					break
				}
				if left := a.grants.left(); left > 0 {
					lapse.Reset(left)
				}
				again = true
			}
		}
	}
}

// pass reads the cluster, decides what the kernel should hold, and has the parts write it,
// in this order:
//
//   - the uplink programs go on before any IP is added there (they guard its ARP), and
//     the steering rules before the first pod is marked for steering;
//   - the nft SNAT map learns of an egress IP before the BPF grant lets packets be marked
//     for it, and forgets it only after that grant is gone: a marked packet always finds
//     its SNAT address (were the map entry missing, the CNI's masquerade would NAT the
//     flow's first packet, and conntrack would keep the flow on the node IP);
//   - the BPF grant is set before the address goes up, and deleted after it is gone;
//   - conntrack entries a change left stale are deleted only after the maps stopped
//     steering their flows, or the grant that SNATed them is gone (conntrack.go);
//   - what a gateway may SNAT (every node's pod CIDRs, every egress IP's destinations)
//     is written before any grant, for every egress IP whether held or not: a grant
//     needs no write of its own, and a frame to an IP held before its destinations are
//     known drops;
//   - the report goes before the nft map shrinks: a controller handing an IP over waits
//     for it, and the entries of IPs let go are inert meanwhile (nothing marks packets
//     for them once their BPF grant is gone);
//   - an IP newly granted gets the copies of its connections (standby.go) written into
//     conntrack before its BPF grant, so their first packets find them; an IP let go
//     hands its last changes to its standby, and the copy stops following it, before its
//     entries are swept and before the report says it was let go.
//
// pass_test.go holds it to each.
func (a *Agent) pass(ctx context.Context) error {
	start := time.Now()
	defer func() { a.m.passSeconds.Observe(time.Since(start).Seconds()) }()
	snap, err := a.cluster.Snapshot()
	if err != nil {
		return err
	}
	want, err := snap.desired(a.tables.builder)
	if err != nil {
		return fmt.Errorf("building dataplane tables: %w", err)
	}
	var errs []error
	// Pods whose interface carries another program are parked (their policy
	// destinations drop) and named (redirect.go).
	foreign, err := a.attach.foreignPrograms()
	if err != nil {
		errs = append(errs, err)
	}
	var redirected []string
	if len(foreign) > 0 {
		var uncovered []string
		want.table, uncovered, redirected = snap.redirectedPods(want.table, foreign)
		want.cover.uncovered = append(want.cover.uncovered, uncovered...)
		slices.Sort(want.cover.uncovered)
	}
	ifaces, err := a.attach.interfaces(snap.nodeIPs)
	if err != nil {
		errs = append(errs, err)
	}
	// The floating IPs this node could be granted, or reach at L2 as a source; it
	// reaches the others through routers, if it has a route to them.
	floating := routing.NewGateways(snap.gateways).FloatingIPs()
	onLink := candidates(floating, ifaces)
	if err := a.attach.attachUplinks(ifaces, onLink); err != nil {
		errs = append(errs, err)
	}
	noRoute, err := a.attach.routeOffSegment(offSegment(floating, onLink))
	if err != nil {
		errs = append(errs, err)
	}
	for _, refused := range want.table.Refused {
		errs = append(errs, refused)
	}
	// The pods whose routes changed are parked, and their stale flows swept, before the
	// maps take the new table (conntrack.go). On the agent's first pass, what was steered
	// before is unknown; its flows are swept after.
	affected, known := a.flows.changed(want.table, snap.cluster)
	swept := false
	if known && len(affected) > 0 {
		if err := a.syncMaps(parked(want.table, affected)); err == nil {
			if err := a.flows.sweep(affected, want.table, snap.cluster); err != nil {
				errs = append(errs, err)
			}
			swept = true
		}
	}
	if err := a.syncMaps(want.table); err == nil || errors.As(err, new(*routing.CapacityError)) {
		// The maps hold the table, or all of it that fits (the rest fails closed).
		if err != nil {
			errs = append(errs, err)
		}
		if !swept {
			if err := a.flows.sweep(affected, want.table, snap.cluster); err != nil {
				errs = append(errs, err)
			}
		}
		a.flows.synced(want.table, snap.cluster)
	} else {
		errs = append(errs, err)
	}
	if err := a.snat.apply(want.podSources, want.snatDestinations, snap.addresses.NodeIPs()); err != nil {
		errs = append(errs, err)
	}
	if err := a.attach.attachPods(want.table); err != nil {
		errs = append(errs, err)
	}
	snat, staged, err := a.grants.number(want.assigned, onLink)
	if err != nil {
		errs = append(errs, err)
	}
	// Every floating IP this node could be granted is staged in the SNAT map ahead of
	// time, so that a grant, in a handover, needs no nft transaction before the address
	// goes up; an entry is inert until BPF marks for it.
	nft := nftState{PodCIDRs: want.backstop, Cluster: snap.cluster, Destinations: want.destinations}
	nft.SNAT = snatMap(staged, a.grants.heldIDs(), snat)
	if err := a.nft.apply(nft); err != nil {
		errs = append(errs, err)
	}
	before := slices.Collect(maps.Values(a.grants.heldIDs()))
	a.standbys.willHold(slices.Collect(maps.Values(snat)), before)
	held, err := a.grants.hold(snat, snap.generation)
	// The IPs let go hand their last conntrack changes to their standbys, and the copy
	// stops following them, before their entries are swept (which the standbys must not
	// follow) and before the report says they were let go.
	a.standbys.letGo(slices.DeleteFunc(before, func(ip netip.Addr) bool { return slices.Contains(held, ip) }))
	a.standbys.route(snap.gateways, snap.peers, held)
	if err != nil {
		errs = append(errs, err)
	} else if err := a.flows.grantsChanged(held); err != nil {
		errs = append(errs, err)
	}
	a.m.heldIPs.Set(float64(len(held)))
	others, full := splitCapacity(errs)
	a.full.log(a.opts.NodeName, capacityMessage(full))
	a.uncovered.log(a.opts.NodeName, want.cover.message())
	a.m.podsUncovered.Set(float64(len(want.cover.uncovered)))
	unreachable := snap.unreachable(want.table, ifaces, noRoute)
	a.unreachable.log(a.opts.NodeName, unreachableMessage(unreachable))
	a.m.podsUnreachable.Set(float64(len(unreachable)))
	copies, _ := a.standbys.copies(time.Now())
	// The report is bounded by half a lease: the loop that waits for it also extends the
	// grants (and the addresses' kernel lifetimes) on every answered heartbeat, and a
	// write to an API server that just came back can hang for seconds. A report that
	// times out is written again a second later.
	reportCtx, cancel := context.WithTimeout(ctx, a.opts.Heartbeat.LeaseDuration/2)
	defer cancel()
	reported, err := a.report.report(reportCtx, passReport{copies: copies, ifaces: ifaces, held: held, observedGen: a.grants.observed,
		passErr: errors.Join(others...), full: capacityMessage(full), served: want.cover.reported, uncovered: want.cover.message(),
		unreachable: unreachableMessage(unreachable), redirected: redirected})
	if err != nil {
		klog.ErrorS(err, "Writing the NetworkGatewayNode status", "node", a.opts.NodeName)
		time.AfterFunc(time.Second, a.wake.kick)
	}
	klog.V(3).InfoS("Dataplane pass", "node", a.opts.NodeName, "generation", snap.generation, "held", held,
		"took", time.Since(start), "reported", reported)
	nft.SNAT = snatMap(staged, a.grants.heldIDs())
	if err := a.nft.apply(nft); err != nil {
		others = append(others, err)
	}
	// A full map is no reason to retry at once: the next change or resync tries again.
	err = errors.Join(others...)
	var notReady error
	switch {
	case err != nil:
		notReady = errPassFailed
	case len(full) > 0:
		notReady = capacityError(full)
	}
	a.notReady.Store(&notReady)
	return err
}

// errPassFailed is /readyz's answer after a failed pass. Anyone on the node network
// reaches /readyz, so it names no pod or IP; the NetworkGatewayNode's Ready says more.
var errPassFailed = errors.New("the last dataplane pass failed; the NetworkGatewayNode's Ready condition says why")

// capacityError is /readyz's answer while maps refuse entries: the maps and their limits,
// and none of the pods or IPs refused, which the CapacityExceeded condition lists.
func capacityError(full []*routing.CapacityError) error {
	maps := make([]string, len(full))
	for i, ce := range full {
		maps[i] = fmt.Sprintf("%s (at most %d)", ce.Map, ce.Limit)
	}
	return fmt.Errorf("%s: %s refuse entries; the NetworkGatewayNode's %s condition says which",
		ConditionCapacityExceeded, strings.Join(maps, ", "), ConditionCapacityExceeded)
}

// conditionLog logs a condition's message when it changes: the problem while there is
// one, and once that it is gone.
type conditionLog struct {
	problem, resolved, key string
	last                   string
}

func (l *conditionLog) log(node, msg string) {
	if msg == l.last {
		return
	}
	if msg != "" {
		klog.ErrorS(nil, l.problem, "node", node, l.key, msg)
	} else {
		klog.InfoS(l.resolved, "node", node)
	}
	l.last = msg
}

// syncMaps has the maps hold t; a full map's CapacityError is returned as it is.
func (a *Agent) syncMaps(t routing.Table) error {
	err := a.tables.maps.Sync(t)
	if err == nil || errors.As(err, new(*routing.CapacityError)) {
		return err
	}
	return fmt.Errorf("programming BPF maps: %w", err)
}

// Ready reports whether the last pass programmed everything, and if not, why not.
func (a *Agent) Ready() error {
	if err := a.notReady.Load(); err != nil {
		return *err
	}
	return errors.New("the dataplane is not programmed yet")
}
