package bpf

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// SetGrant lets egw_uplink_in mark packets steered to ip with snatID (the nft
// table's key for SNAT to ip) until expires, an instant on CLOCK_MONOTONIC as
// bpf_ktime_get_ns reads it. An expires in the past writes a grant that is already over.
func (d *Dataplane) SetGrant(ip netip.Addr, snatID uint32, expires time.Duration) error {
	key, err := toIPv4(ip)
	if err != nil {
		return fmt.Errorf("granting %s: %w", ip, err)
	}
	if snatID == 0 || snatID > markIDMax {
		return fmt.Errorf("granting %s: snat id %d does not fit the packet mark (1..%d)", ip, snatID, markIDMax)
	}
	value := grantValue{SNATID: snatID, ExpiresNs: uint64(max(expires, 0))}
	d.mu.Lock()
	defer d.mu.Unlock()
	err = d.objs.EgwGrants.Update(key, value, ebpf.UpdateAny)
	if errors.Is(err, unix.E2BIG) || errors.Is(err, unix.ENOSPC) {
		// The map is full of other grants: this IP is not granted (its steered packets
		// are not SNATed here), and the grants there stay. The stale ones go after
		// their addresses (the agent's holdGrants), so the next pass finds room.
		return &CapacityError{Map: egwMapEgwGrants, Limit: int(d.objs.EgwGrants.MaxEntries()), What: "grants (floating IPs held by this node)", Refused: refuseAddrs([]netip.Addr{ip})}
	}
	if err != nil {
		return fmt.Errorf("granting %s in egw_grants (holds %d): %w", ip, d.objs.EgwGrants.MaxEntries(), err)
	}
	return nil
}

// DeleteGrant stops SNAT to ip at once. Deleting a grant that is not there is a no-op.
func (d *Dataplane) DeleteGrant(ip netip.Addr) error {
	key, err := toIPv4(ip)
	if err != nil {
		return fmt.Errorf("revoking the grant for %s: %w", ip, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.objs.EgwGrants.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("revoking the grant for %s from egw_grants: %w", ip, err)
	}
	return nil
}

// Grants returns the egress IPs egw_grants holds a grant for, expired or not, with
// their SNAT ids: a restarted agent keeps numbering them the same way.
func (d *Dataplane) Grants() (map[netip.Addr]uint32, error) {
	out := map[netip.Addr]uint32{}
	var key ipv4
	var value grantValue
	it := d.objs.EgwGrants.Iterate()
	for it.Next(&key, &value) {
		out[key.addr()] = value.SNATID
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("listing egw_grants: %w", err)
	}
	return out, nil
}

// Uplink is the interface through which this node reaches an egress IP on the IP's own
// subnet, and its MAC.
type Uplink struct {
	Ifindex int
	MAC     net.HardwareAddr
}

// SetUplinks makes egw_uplinks hold exactly uplinks: egw_uplink_out sends a packet
// steered to one of these IPs out of its interface, and drops one steered to any other.
// Stale entries go first, so that the old and new entries together never need more room
// than the map has; an IP that stays keeps its entry, and never misses a packet. If
// uplinks do not fit, the IPs the map holds already keep their entries, the lowest of the
// others fill the room left, and the rest are refused (their steered packets drop) with a
// *CapacityError.
func (d *Dataplane) SetUplinks(uplinks map[netip.Addr]Uplink) error {
	want := make(map[ipv4]uplinkValue, len(uplinks))
	for ip, u := range uplinks {
		key, err := toIPv4(ip)
		if err != nil {
			return fmt.Errorf("the uplink of %s: %w", ip, err)
		}
		if len(u.MAC) != 6 || u.Ifindex <= 0 {
			return fmt.Errorf("the uplink of %s: interface %d with MAC %q is not an Ethernet interface", ip, u.Ifindex, u.MAC)
		}
		want[key] = uplinkValue{Ifindex: uint32(u.Ifindex), MAC: [6]byte(u.MAC)}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	refused, err := setByIP(d.objs.EgwUplinks, want)
	if err != nil {
		return fmt.Errorf("writing the uplinks: %w", err)
	}
	if len(refused) > 0 {
		return &CapacityError{Map: egwMapEgwUplinks, Limit: int(d.objs.EgwUplinks.MaxEntries()), What: "uplinks (floating IPs on this node's subnets)", Refused: refuseAddrs(refused)}
	}
	return nil
}

// Routed is how this node reaches an egress IP on none of its subnets: the interface its
// route to the IP leaves by, and the source address the kernel picks for that route.
type Routed struct {
	Ifindex int
	Src     netip.Addr
}

// SetRouted makes egw_routed hold exactly routed: egw_from_pod sends a packet steered to
// one of these IPs (and on no uplink's subnet) the routed way, wrapped in IPv4 from Src
// to the IP, out of Ifindex. Stale entries go first; if routed does not fit, the IPs the
// map holds keep their entries, the lowest of the others fill the room left, and the
// rest are refused (their steered packets drop) with a *CapacityError.
func (d *Dataplane) SetRouted(routed map[netip.Addr]Routed) error {
	want := make(map[ipv4]routedValue, len(routed))
	for ip, r := range routed {
		key, err := toIPv4(ip)
		if err != nil {
			return fmt.Errorf("the route to %s: %w", ip, err)
		}
		src, err := toIPv4(r.Src)
		if err != nil || r.Ifindex <= 0 {
			return fmt.Errorf("the route to %s: interface %d, source %s: want an interface and an IPv4 source", ip, r.Ifindex, r.Src)
		}
		want[key] = routedValue{Ifindex: uint32(r.Ifindex), Saddr: src}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	refused, err := setByIP(d.objs.EgwRouted, want)
	if err != nil {
		return fmt.Errorf("writing the routes to egress IPs: %w", err)
	}
	if len(refused) > 0 {
		return &CapacityError{Map: egwMapEgwRouted, Limit: int(d.objs.EgwRouted.MaxEntries()), What: "routed egress IPs (floating IPs on none of this node's subnets)", Refused: refuseAddrs(refused)}
	}
	return nil
}
