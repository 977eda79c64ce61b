package bpf

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
)

// podSourceKey mirrors struct egw_pod_source, the key of egw_pod_sources.
type podSourceKey struct {
	Ifindex uint32
	Saddr   ipv4
}

// setPodSources makes egw_pod_sources hold exactly sources for the veth ifindex: the new
// entries first, so that the pod's own packets are never dropped while the set changes,
// then the ones it no longer has. d.mu is held.
func (d *Dataplane) setPodSources(ifindex int, sources []netip.Addr) error {
	want := map[podSourceKey]bool{}
	for _, a := range sources {
		ip, err := toIPv4(a)
		if err != nil {
			return fmt.Errorf("the sources of the pod on interface %d: %w", ifindex, err)
		}
		k := podSourceKey{Ifindex: uint32(ifindex), Saddr: ip}
		want[k] = true
		if err := d.objs.EgwPodSources.Update(k, uint8(1), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("writing source %s of the pod on interface %d to egw_pod_sources (holds %d): %w",
				a, ifindex, d.objs.EgwPodSources.MaxEntries(), err)
		}
	}
	return d.deletePodSources(ifindex, want)
}

// deletePodSources deletes the entries of the veth ifindex that keep does not hold.
// d.mu is held.
func (d *Dataplane) deletePodSources(ifindex int, keep map[podSourceKey]bool) error {
	var stale []podSourceKey
	var k podSourceKey
	var v uint8
	it := d.objs.EgwPodSources.Iterate()
	for it.Next(&k, &v) {
		if k.Ifindex == uint32(ifindex) && !keep[k] {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("listing egw_pod_sources: %w", err)
	}
	for _, k := range stale {
		if err := d.objs.EgwPodSources.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("deleting source %s of interface %d from egw_pod_sources: %w", k.Saddr.addr(), ifindex, err)
		}
	}
	return nil
}

// PodSources returns the sources egw_pod_sources lets each veth send from.
func (d *Dataplane) PodSources() (map[int][]netip.Addr, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[int][]netip.Addr{}
	var k podSourceKey
	var v uint8
	it := d.objs.EgwPodSources.Iterate()
	for it.Next(&k, &v) {
		out[int(k.Ifindex)] = append(out[int(k.Ifindex)], k.Saddr.addr())
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("listing egw_pod_sources: %w", err)
	}
	return out, nil
}
