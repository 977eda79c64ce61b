package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	versioned "github.com/egressgw/egressgw/apiserver/client/clientset/versioned"
	"github.com/egressgw/egressgw/apiserver/routing"
	"github.com/egressgw/egressgw/bpf"
)

// Agent is one node's agent.
type Agent struct {
	opts   Options
	caches *caches
	beat   *heartbeat
	beats  *beater // nil without the direct channel to the leader
	// readGrants and readLeader ask directReads for a read that skips the informers.
	readGrants, readLeader chan struct{}
	kube                   kubernetes.Interface
	net                    versioned.Interface
	dp                     dataplane
	fips                   floatingIPs
	host                   host
	report                 reporter
	now                    func() time.Duration
	m                      *metrics

	tables  *routing.TableBuilder
	snatIDs *routing.IDs
	trigger chan struct{}
	// refresh asks the loop to extend the held grants in the kernel: cheaper than a
	// pass, and it comes with every heartbeat answered.
	refresh chan struct{}
	lastNft string
	// snat is the SNAT id of each floating IP the dataplane may SNAT to.
	snat map[uint32]netip.Addr
	// lastReport is what the node report last said, to write it only when that changes.
	lastReport string
	// observedGen is the generation of the node's grants that the floating IPs match.
	observedGen int64
	attached    map[int]netip.Addr // pod ifindex → pod IP
	uplinks     map[string]int     // interface name → ifindex its uplink programs are attached to
	steering    []int              // the uplinks EnsureSteering was last given
	steeredAt   time.Duration      // when, on a.now's clock

	mu       sync.Mutex
	synced   bool
	held     []netip.Addr
	lastSync time.Time
}

// reporter writes the node's NetworkGatewayNode status.
type reporter interface {
	Report(ctx context.Context, ifaces []Interface, held []netip.Addr, observedGeneration int64, ready bool, message string) error
}

// kick asks for a pass soon; many kicks before the pass make one pass.
func (a *Agent) kick() { signal(a.trigger) }

// extended follows every extension of the grant: a grant that had lapsed needs a pass
// to take its IPs again; otherwise the kernel's copies of the expiry move forward.
func (a *Agent) extended(lapsed bool) {
	a.m.grantExpiry.Set((a.beat.grantExpiry() - a.now()).Seconds())
	if lapsed {
		a.kick()
		return
	}
	signal(a.refresh)
}

func (a *Agent) handler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { a.kick() },
		UpdateFunc: func(any, any) { a.kick() },
		DeleteFunc: func(any) { a.kick() },
	}
}

// loop runs passes: on every change, on every renewal (grants move), when the grant is
// about to lapse, and every resync period to catch what the kernel lost.
func (a *Agent) loop(ctx context.Context) {
	resync := time.NewTicker(a.opts.Resync)
	defer resync.Stop()
	lapse := time.NewTimer(time.Hour)
	defer lapse.Stop()
	for {
		if err := a.pass(ctx); err != nil {
			klog.ErrorS(err, "Dataplane pass failed; retrying", "node", a.opts.NodeName)
			a.m.passErrors.Inc()
			time.AfterFunc(time.Second, a.kick)
		}
		// Wake up exactly when the grant lapses, to drop the floating IPs on time.
		if left := a.beat.grantExpiry() - a.now(); left > 0 {
			lapse.Reset(left)
		}
		for again := true; again; {
			again = false
			select {
			case <-ctx.Done():
				return
			case <-a.trigger:
			case <-resync.C:
			case <-lapse.C:
			case <-a.refresh:
				if err := a.refreshGrants(); err != nil {
					klog.ErrorS(err, "Extending the grants in the kernel failed; a pass follows", "node", a.opts.NodeName)
					break
				}
				if left := a.beat.grantExpiry() - a.now(); left > 0 {
					lapse.Reset(left)
				}
				again = true
			}
		}
	}
}

// refreshGrants extends the grants of the IPs held now, in BPF and on the interfaces.
func (a *Agent) refreshGrants() error {
	if len(a.snat) == 0 {
		return nil
	}
	_, err := a.holdGrants(a.snat)
	return err
}

// pass reads the caches and makes the kernel match.
func (a *Agent) pass(ctx context.Context) error {
	start := time.Now()
	defer func() { a.m.passSeconds.Observe(time.Since(start).Seconds()) }()
	snap, err := a.caches.snapshot(a.opts)
	if err != nil {
		return err
	}
	want, err := snap.desired(a.tables)
	if err != nil {
		return fmt.Errorf("building dataplane tables: %w", err)
	}
	var errs []error
	// The interfaces that can hold floating IPs: they get the uplink programs and carry
	// steered packets, they bound what is staged, and they are reported. The routing
	// rules go in before the first pod is marked for steering.
	ifaces, ifacesErr := a.fips.Interfaces()
	if ifacesErr != nil {
		errs = append(errs, fmt.Errorf("listing interfaces: %w", ifacesErr))
	}
	// The floating IPs this node could be granted, or reach at L2 as a source.
	onLink := candidates(routing.NewGateways(snap.gateways).FloatingIPs(), ifaces)
	if err := a.attachUplinks(ifaces, onLink); err != nil {
		errs = append(errs, err)
	}
	if err := a.dp.Sync(want.table); err != nil {
		errs = append(errs, fmt.Errorf("programming BPF maps: %w", err))
	}
	if err := a.attachPods(want.table); err != nil {
		errs = append(errs, err)
	}
	nft := nftState{PodCIDRs: snap.podCIDRs, Cluster: snap.cluster, Destinations: want.destinations}
	snat, staged, err := a.numberGrants(want.assigned, onLink)
	if err != nil {
		errs = append(errs, err)
	}
	// The nft table learns of an egress IP before the dataplane may mark packets for it,
	// and forgets it only after: a marked packet always finds its SNAT address. (Were the
	// map entry missing, the CNI's masquerade would NAT the flow's first packet, and
	// conntrack would keep the flow on the node IP.) Every floating IP this node could be
	// granted is staged in the map ahead of time, so that a grant, in a handover, needs no
	// nft transaction before the address goes up; an entry is inert until BPF marks for it.
	nft.SNAT = map[uint32]netip.Addr{}
	maps.Copy(nft.SNAT, staged)
	maps.Copy(nft.SNAT, a.snat)
	maps.Copy(nft.SNAT, snat)
	if err := a.applyNftables(nft); err != nil {
		errs = append(errs, err)
	}
	held, err := a.holdGrants(snat)
	if err != nil {
		errs = append(errs, err)
	} else {
		// Only now does the node hold exactly what this generation grants: the controller
		// waits for this before it grants a released IP to another node.
		a.observedGen = snap.generation
	}
	a.snat = map[uint32]netip.Addr{}
	for id, ip := range snat {
		if slices.Contains(held, ip) {
			a.snat[id] = ip
		}
	}
	a.m.heldIPs.Set(float64(len(held)))
	// The report goes first: a controller handing an IP over waits for it. The nft map
	// entries of IPs let go are inert meanwhile: nothing marks packets for them once
	// their BPF grant is gone.
	reported := a.writeReport(ctx, ifaces, held, errors.Join(errs...))
	klog.V(3).InfoS("Dataplane pass", "node", a.opts.NodeName, "generation", snap.generation, "held", held,
		"took", time.Since(start), "reported", reported)
	nft.SNAT = map[uint32]netip.Addr{}
	maps.Copy(nft.SNAT, staged)
	maps.Copy(nft.SNAT, a.snat)
	if err := a.applyNftables(nft); err != nil {
		errs = append(errs, err)
	}
	err = errors.Join(errs...)
	a.mu.Lock()
	a.held, a.synced, a.lastSync = held, err == nil, time.Now()
	a.mu.Unlock()
	return err
}

// applyNftables writes the nft table if it changed.
func (a *Agent) applyNftables(n nftState) error {
	text := n.render()
	if text == a.lastNft {
		return nil
	}
	start := time.Now()
	if err := a.host.ApplyNftables(n); err != nil {
		return fmt.Errorf("writing the nft table: %w", err)
	}
	a.m.nftSeconds.Observe(time.Since(start).Seconds())
	klog.V(3).InfoS("Wrote the nft table", "node", a.opts.NodeName, "took", time.Since(start), "egressIPs", len(n.SNAT), "destinations", len(n.Destinations))
	a.lastNft = text
	return nil
}

// numberGrants gives each floating IP the gateways place here its SNAT id, while the
// node's grant is valid; with no valid grant it wants nothing held. It numbers the
// candidates too (staged: IPs this node could be granted), which keep their ids.
func (a *Agent) numberGrants(assigned, candidates []netip.Addr) (snat, staged map[uint32]netip.Addr, err error) {
	if a.beat.grantExpiry()-a.now() <= 0 {
		assigned = nil
	}
	snat, staged = map[uint32]netip.Addr{}, map[uint32]netip.Addr{}
	var errs []error
	for _, ip := range assigned {
		id, err := a.snatIDs.Get(ip.String())
		if err != nil {
			errs = append(errs, fmt.Errorf("numbering floating IP %s: %w", ip, err))
			continue
		}
		snat[id] = ip
	}
	if len(candidates) > maxStaged {
		candidates = nil // the ids are for grants first: no staging beyond this many
	}
	for _, ip := range candidates {
		if id, err := a.snatIDs.Get(ip.String()); err == nil {
			staged[id] = ip
		}
	}
	a.snatIDs.Sweep()
	return snat, staged, errors.Join(errs...)
}

// maxStaged is the most floating IPs staged in the SNAT map: half the ids.
const maxStaged = routing.MaxEgressIDs / 2

// candidates are the floating IPs (of every gateway) that fall in a subnet of this
// node's interfaces: those the controller could grant it.
func candidates(floatingIPs []netip.Addr, ifaces []Interface) []netip.Addr {
	var out []netip.Addr
	for _, ip := range floatingIPs {
		if slices.ContainsFunc(ifaces, func(i Interface) bool {
			return slices.ContainsFunc(i.Subnets, func(p netip.Prefix) bool { return p.Contains(ip) })
		}) {
			out = append(out, ip)
		}
	}
	return out
}

// attachUplinks puts the uplink programs on every interface that can hold floating IPs,
// before any IP is added there (they guard its ARP); tells the dataplane which of them
// reaches each of the gateways' floating IPs on its subnet (egressIPs: those on a subnet
// of this node); and routes steered packets out of the first one that reaches any, or
// the first one if none does (egw_uplink_out moves a packet to its IP's uplink).
func (a *Agent) attachUplinks(ifaces []Interface, egressIPs []netip.Addr) error {
	if a.uplinks == nil {
		a.uplinks = map[string]int{}
	}
	var errs []error
	var indexes []int
	steer := -1
	uplinks := map[netip.Addr]bpf.Uplink{}
	for _, i := range ifaces {
		ifi, err := net.InterfaceByName(i.Name)
		if err != nil {
			errs = append(errs, fmt.Errorf("finding interface %s: %w", i.Name, err))
			continue
		}
		reaches := false
		for _, ip := range egressIPs {
			if _, done := uplinks[ip]; !done && slices.ContainsFunc(i.Subnets, func(p netip.Prefix) bool { return p.Contains(ip) }) {
				uplinks[ip] = bpf.Uplink{Ifindex: ifi.Index, MAC: ifi.HardwareAddr}
				reaches = true
			}
		}
		if a.uplinks[i.Name] != ifi.Index {
			if err := a.dp.AttachUplink(ifi.Index); err != nil {
				errs = append(errs, err)
				continue
			}
			a.uplinks[i.Name] = ifi.Index
		}
		if steer < 0 && reaches {
			steer = len(indexes)
		}
		indexes = append(indexes, ifi.Index)
	}
	if err := a.dp.SetUplinks(uplinks); err != nil {
		errs = append(errs, err)
	}
	if len(indexes) == 0 {
		return errors.Join(append(errs, errors.New("no interface can hold floating IPs, so steered packets have no way out and are dropped"))...)
	}
	if steer > 0 {
		indexes[0], indexes[steer] = indexes[steer], indexes[0]
	}
	// Passes run on every renewal: the kernel is asked again when the uplinks change, and
	// once per resync interval, to repair what someone else changed.
	if !slices.Equal(indexes, a.steering) || a.now()-a.steeredAt >= a.opts.Resync {
		if err := a.host.EnsureSteering(indexes[0], indexes); err != nil {
			a.steering = nil
			return errors.Join(append(errs, fmt.Errorf("routing steered packets: %w", err))...)
		}
		a.steering, a.steeredAt = indexes, a.now()
	}
	return errors.Join(errs...)
}

// holdGrants holds the numbered floating IPs while the grant is valid, and lets the
// dataplane SNAT to exactly those. It returns the IPs held.
func (a *Agent) holdGrants(snat map[uint32]netip.Addr) ([]netip.Addr, error) {
	expiry := a.beat.grantExpiry()
	left := expiry - a.now()
	want := map[netip.Addr]time.Duration{}
	var errs []error
	for _, id := range slices.Sorted(maps.Keys(snat)) {
		ip := snat[id]
		// The dataplane learns of the grant before the address appears, and
		// forgets it after the address is gone (below): traffic never reaches an IP
		// whose grant the dataplane does not know.
		if err := a.dp.SetGrant(ip, id, expiry); err != nil {
			errs = append(errs, fmt.Errorf("granting %s in the dataplane: %w", ip, err))
			continue
		}
		want[ip] = left
	}
	if err := a.fips.Reconcile(want); err != nil {
		errs = append(errs, fmt.Errorf("holding floating IPs: %w", err))
	}
	granted, err := a.dp.Grants()
	if err != nil {
		errs = append(errs, err)
	}
	for ip := range granted {
		if _, ok := want[ip]; !ok {
			if err := a.dp.DeleteGrant(ip); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return slices.SortedFunc(maps.Keys(want), netip.Addr.Compare), errors.Join(errs...)
}

// attachPods puts the classifier on every local pod's veth and takes it off veths whose
// pod is gone. A pod whose veth is not found yet is caught by the nft backstop.
func (a *Agent) attachPods(t routing.Table) error {
	var errs []error
	seen := map[int]bool{}
	for ip := range t.Pods {
		ifindex, ok := a.host.PodLink(ip)
		if !ok {
			continue
		}
		seen[ifindex] = true
		if a.attached[ifindex] == ip {
			continue
		}
		if err := a.dp.AttachPod(ifindex); err != nil {
			errs = append(errs, fmt.Errorf("attaching to the veth of pod %s: %w", ip, err))
			continue
		}
		a.attached[ifindex] = ip
	}
	current, err := a.dp.AttachedPods()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, ifindex := range current {
		if !seen[ifindex] {
			if err := a.dp.DetachPod(ifindex); err != nil {
				errs = append(errs, err)
			}
			delete(a.attached, ifindex)
		}
	}
	return errors.Join(errs...)
}

// writeReport writes the node's report when what it says changed, and says whether it
// wrote it.
func (a *Agent) writeReport(ctx context.Context, ifaces []Interface, held []netip.Addr, passErr error) bool {
	msg := fmt.Sprintf("dataplane programmed; holding %d floating IPs", len(held))
	if passErr != nil {
		msg = passErr.Error()
	}
	key := fmt.Sprint(ifaces, held, a.observedGen, msg)
	if key == a.lastReport {
		return false
	}
	if err := a.report.Report(ctx, ifaces, held, a.observedGen, passErr == nil, msg); err != nil {
		klog.ErrorS(err, "Writing the NetworkGatewayNode status", "node", a.opts.NodeName)
		time.AfterFunc(time.Second, a.kick)
		return false
	}
	a.lastReport = key
	return true
}

// heartbeatLoop renews the Lease and, after each renewal, has a pass extend the grants.
// While the leader vouches for the grants over UDP, the Lease is written only every
// LeaseRefresh, which keeps the API server's load at a write per node every few seconds;
// as soon as the answers stop, the Lease is renewed every RenewInterval again.
func (a *Agent) heartbeatLoop(ctx context.Context) {
	t := time.NewTicker(a.opts.Heartbeat.RenewInterval)
	defer t.Stop()
	for {
		now := a.now()
		answered := a.beats != nil && a.beat.lastVouched() != 0 && now-a.beat.lastVouched() < a.opts.Heartbeat.RenewInterval
		if !answered || now-a.beat.lastWritten() >= a.opts.Heartbeat.LeaseRefresh {
			rctx, cancel := context.WithTimeout(ctx, a.opts.Heartbeat.RenewInterval)
			lapsed := a.beat.grantExpiry() <= a.now()
			err := a.beat.renew(rctx, a.beats == nil)
			cancel()
			a.m.leaseWrites.Inc()
			if err != nil {
				a.m.renewFailures.Inc()
				klog.ErrorS(err, "Heartbeat renewal failed; floating IPs are dropped when the grant lapses",
					"node", a.opts.NodeName, "grantLeft", a.beat.grantExpiry()-a.now())
			} else {
				a.extended(lapsed)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Ready reports whether the last pass programmed everything.
func (a *Agent) Ready() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.synced {
		return errors.New("the dataplane is not programmed yet, or the last pass failed")
	}
	return nil
}
