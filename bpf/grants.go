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
	have := map[ipv4]uplinkValue{}
	var key ipv4
	var value uplinkValue
	it := d.objs.EgwUplinks.Iterate()
	for it.Next(&key, &value) {
		have[key] = value
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("listing egw_uplinks: %w", err)
	}
	for k := range have {
		if _, ok := want[k]; !ok {
			if err := d.objs.EgwUplinks.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("deleting the uplink of %s from egw_uplinks: %w", k.addr(), err)
			}
			delete(have, k)
		}
	}
	room := int(d.objs.EgwUplinks.MaxEntries()) - len(have)
	var refused []netip.Addr
	for _, k := range sortedIPs(want) {
		old, ok := have[k]
		if ok && old == want[k] {
			continue
		}
		if !ok {
			if room == 0 {
				refused = append(refused, k.addr())
				continue
			}
			room--
		}
		if err := d.objs.EgwUplinks.Update(k, want[k], ebpf.UpdateAny); err != nil {
			return fmt.Errorf("writing the uplink of %s to egw_uplinks (holds %d): %w", k.addr(), d.objs.EgwUplinks.MaxEntries(), err)
		}
	}
	if len(refused) > 0 {
		return &CapacityError{Map: egwMapEgwUplinks, Limit: int(d.objs.EgwUplinks.MaxEntries()), What: "uplinks (floating IPs on this node's subnets)", Refused: refuseAddrs(refused)}
	}
	return nil
}
