package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
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
	if err := d.objs.EgwGrants.Update(key, value, ebpf.UpdateAny); err != nil {
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
