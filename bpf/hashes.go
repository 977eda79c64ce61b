package bpf

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
)

// setByIP makes the hash m, keyed by IPv4 address, hold exactly want. Stale entries go
// first, so that the old and new entries together never need more room than m has; an
// address that stays keeps its entry (rewritten only if its value changed), and never
// misses a packet. What does not fit is refused, lowest address first filling the room,
// and returned in order.
func setByIP[V comparable](m *ebpf.Map, want map[ipv4]V) ([]netip.Addr, error) {
	have, err := iterate[ipv4, V](m)
	if err != nil {
		return nil, err
	}
	for k := range have {
		if _, ok := want[k]; !ok {
			if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return nil, fmt.Errorf("deleting %s from %s: %w", k.addr(), m, err)
			}
			delete(have, k)
		}
	}
	room := int(m.MaxEntries()) - len(have)
	var refused []netip.Addr
	for _, k := range sortedIPs(want) {
		old, ok := have[k]
		if ok && old == want[k] {
			continue
		}
		if !ok {
			if room <= 0 {
				refused = append(refused, k.addr())
				continue
			}
			room--
		}
		if err := m.Update(k, want[k], ebpf.UpdateAny); err != nil {
			return nil, fmt.Errorf("writing %s to %s (holds %d): %w", k.addr(), m, m.MaxEntries(), err)
		}
	}
	return refused, nil
}
