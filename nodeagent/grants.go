package nodeagent

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"k8s.io/klog/v2"

	"github.com/egressgw/egressgw/apiserver/routing"
)

// grantKeeper keeps the node's grant and holds the floating IPs it covers: the heartbeat
// (Lease renewals, and UDP beats to the leader) extends the grant; each floating IP the
// controller grants the node gets a SNAT id, a BPF grant and its address while the grant
// is valid, and never past it: the BPF grants expire with it, and the addresses' kernel
// lifetimes end with it.
//
// Passes and refreshes run on the agent's loop goroutine; the heartbeat on its own, and it
// only extends the grant.
type grantKeeper struct {
	beat   *heartbeat     // the grant, which Lease renewals and vouched beats extend
	direct *directChannel // nil without the direct channel to the leader
	timing HeartbeatOptions
	ids    *routing.IDs
	dp     grantMaps
	fips   addressHolder
	wake   wakeups
	m      *metrics

	// held is the SNAT id of each floating IP held now.
	held map[uint32]netip.Addr
	// observed is the generation of the node's grants that the held IPs match.
	observed int64
}

// expiry is when the grant lapses, on the dataplane's monotonic clock; zero if there is
// none.
func (k *grantKeeper) expiry() time.Duration { return k.beat.grantExpiry() }

// left is how long the grant lasts still; not positive once it has lapsed.
func (k *grantKeeper) left() time.Duration { return k.beat.grantExpiry() - k.beat.now() }

// extended follows every extension of the grant: a grant that had lapsed needs a pass
// to take its IPs again; otherwise the kernel's copies of the expiry move forward.
func (k *grantKeeper) extended(lapsed bool) {
	k.m.grantExpiry.Set(k.left().Seconds())
	if lapsed {
		k.wake.kick()
		return
	}
	k.wake.refreshSoon()
}

// restore numbers the IPs the dataplane still grants as before a restart: the nft table
// the last agent left behind maps those numbers.
func (k *grantKeeper) restore() error {
	granted, err := k.dp.Grants()
	if err != nil {
		return err
	}
	k.held = map[uint32]netip.Addr{}
	for ip, id := range granted {
		if err := k.ids.Keep(ip.String(), id); err != nil {
			klog.ErrorS(err, "Renumbering a floating IP the dataplane still grants", "ip", ip)
			continue
		}
		k.held[id] = ip
	}
	return nil
}

// number gives each floating IP the gateways place here its SNAT id, while the node's
// grant is valid; with no valid grant it wants nothing held. It numbers the candidates
// too (staged: IPs this node could be granted), which keep their ids.
func (k *grantKeeper) number(assigned, candidates []netip.Addr) (snat, staged map[uint32]netip.Addr, err error) {
	if k.left() <= 0 {
		assigned = nil
	}
	snat, staged = map[uint32]netip.Addr{}, map[uint32]netip.Addr{}
	var refused []netip.Addr
	for _, ip := range assigned {
		id, err := k.ids.Get(ip.String())
		if err != nil {
			refused = append(refused, ip) // not held: its traffic is not SNATed here
			continue
		}
		snat[id] = ip
	}
	if len(candidates) > maxStaged {
		candidates = nil // the ids are for grants first: no staging beyond this many
	}
	for _, ip := range candidates {
		if id, err := k.ids.Get(ip.String()); err == nil {
			staged[id] = ip
		}
	}
	k.ids.Sweep()
	if len(refused) > 0 {
		err = &routing.CapacityError{Map: "SNAT ids", Limit: routing.MaxEgressIDs,
			What: "floating IPs granted to this node (the packet mark carries a 12-bit id)", Refused: routing.RefusedAddrs(refused)}
	}
	return snat, staged, err
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

// hold holds the numbered floating IPs, of the node's grants of generation, and returns
// those it holds. Held without error, they are all that generation grants.
func (k *grantKeeper) hold(snat map[uint32]netip.Addr, generation int64) ([]netip.Addr, error) {
	held, err := k.holdGrants(snat)
	if err == nil {
		// Only now does the node hold exactly what this generation grants: the controller
		// waits for this before it grants a released IP to another node.
		k.observed = generation
	}
	k.held = map[uint32]netip.Addr{}
	for id, ip := range snat {
		if slices.Contains(held, ip) {
			k.held[id] = ip
		}
	}
	return held, err
}

// heldIDs is the SNAT id of each floating IP held now.
func (k *grantKeeper) heldIDs() map[uint32]netip.Addr { return k.held }

// refresh extends the grants of the IPs held now, in BPF and on the interfaces.
func (k *grantKeeper) refresh() error {
	if len(k.held) == 0 {
		return nil
	}
	_, err := k.holdGrants(k.held)
	return err
}

// holdGrants holds the numbered floating IPs while the grant is valid, and lets the
// dataplane SNAT to exactly those. It returns the IPs held.
func (k *grantKeeper) holdGrants(snat map[uint32]netip.Addr) ([]netip.Addr, error) {
	expiry := k.expiry()
	left := expiry - k.beat.now()
	want := map[netip.Addr]time.Duration{}
	var errs []error
	for _, id := range slices.Sorted(maps.Keys(snat)) {
		ip := snat[id]
		// The dataplane learns of the grant before the address appears, and
		// forgets it after the address is gone (below): traffic never reaches an IP
		// whose grant the dataplane does not know.
		if err := k.dp.SetGrant(ip, id, expiry); err != nil {
			errs = append(errs, fmt.Errorf("granting %s in the dataplane: %w", ip, err))
			continue
		}
		want[ip] = left
	}
	if err := k.fips.Reconcile(want); err != nil {
		errs = append(errs, fmt.Errorf("holding floating IPs: %w", err))
	}
	granted, err := k.dp.Grants()
	if err != nil {
		errs = append(errs, err)
	}
	for ip := range granted {
		if _, ok := want[ip]; !ok {
			if err := k.dp.DeleteGrant(ip); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return slices.SortedFunc(maps.Keys(want), netip.Addr.Compare), errors.Join(errs...)
}
