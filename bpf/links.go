package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Links are pinned under pinDir/links, one file per attachment, named for what it is
// attached to: pod-<ifindex>, uplink-in-<ifindex> and uplink-out-<ifindex>. The pin keeps
// the program attached when the agent exits, and lets the next agent update it in place.
const (
	linksDir        = "links"
	podLinkPrefix   = "pod-"
	uplinkInPrefix  = "uplink-in-"
	uplinkOutPrefix = "uplink-out-"
)

// attachment is a program and where it goes.
type attachment struct {
	prog   *ebpf.Program
	typ    ebpf.AttachType
	anchor link.Anchor
}

// attachmentFor says what the link pinned as name runs; false for a file we did not make.
func (d *Dataplane) attachmentFor(name string) (attachment, bool) {
	switch _, err := strconv.Atoi(name[strings.LastIndexByte(name, '-')+1:]); {
	case err != nil:
		return attachment{}, false
	case strings.HasPrefix(name, uplinkOutPrefix):
		// Last in the chain: what leaves is what counts.
		return attachment{prog: d.objs.EgwUplinkOut, typ: ebpf.AttachTCXEgress, anchor: link.Tail()}, true
	case strings.HasPrefix(name, uplinkInPrefix):
		// First: a program after ours sees the frame as the stack will, addressed to us.
		return attachment{prog: d.objs.EgwUplinkIn, typ: ebpf.AttachTCXIngress, anchor: link.Head()}, true
	case strings.HasPrefix(name, podLinkPrefix):
		// First in the chain: a CNI program after ours still runs (we return TCX_NEXT),
		// and sees the mark.
		return attachment{prog: d.objs.EgwFromPod, typ: ebpf.AttachTCXIngress, anchor: link.Head()}, true
	}
	return attachment{}, false
}

func (d *Dataplane) linkPath(name string) string { return filepath.Join(d.pinDir, linksDir, name) }

func podLinkName(ifindex int) string { return podLinkPrefix + strconv.Itoa(ifindex) }

// updateLinks moves every live pinned link onto this Load's programs. A link whose
// interface is gone is left for DetachPod (AttachedPods reports it) or AttachUplink.
func (d *Dataplane) updateLinks() error {
	names, err := pinnedLinks(filepath.Join(d.pinDir, linksDir))
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range names {
		a, ok := d.attachmentFor(name)
		if !ok {
			continue
		}
		if err := d.update(name, a); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (d *Dataplane) update(name string, a attachment) error {
	l, err := link.LoadPinnedLink(d.linkPath(name), nil)
	if err != nil {
		return fmt.Errorf("opening pinned link %s: %w", d.linkPath(name), err)
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		return fmt.Errorf("reading pinned link %s: %w", d.linkPath(name), err)
	}
	if tcx := info.TCX(); tcx == nil || tcx.Ifindex == 0 {
		return nil // Defunct: its interface is gone.
	}
	if err := l.Update(a.prog); err != nil {
		return fmt.Errorf("moving pinned link %s onto the new program: %w", d.linkPath(name), err)
	}
	return nil
}

// AttachPod attaches egw_from_pod to the tcx ingress of a pod's veth (host side), which
// drops every IPv4 packet whose source is not one of sources, the pod's own addresses.
// The sources are written first, so that the pod's first packet is not dropped; called
// again with other sources, it adds the new ones before it removes the old. It is a no-op
// if it is attached there already with these sources.
func (d *Dataplane) AttachPod(ifindex int, sources []netip.Addr) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.setPodSources(ifindex, sources); err != nil {
		return err
	}
	return d.attach(podLinkName(ifindex), ifindex)
}

// AttachUplink attaches egw_uplink_out to the tcx egress and egw_uplink_in to the tcx
// ingress of an interface that can hold floating IPs: steered packets leave it for the
// virtual MAC of their egress IP, it sends no ARP for an IP whose grant has lapsed, and
// it takes in what is steered to the IPs it holds. It is a no-op if they are attached
// there already.
func (d *Dataplane) AttachUplink(ifindex int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := strconv.Itoa(ifindex)
	return errors.Join(d.attach(uplinkOutPrefix+n, ifindex), d.attach(uplinkInPrefix+n, ifindex))
}

func (d *Dataplane) attach(name string, ifindex int) error {
	a, _ := d.attachmentFor(name)
	path := d.linkPath(name)
	switch l, err := link.LoadPinnedLink(path, nil); {
	case err == nil:
		done, err := d.reuse(l, a, ifindex)
		l.Close()
		if err != nil || done {
			return err
		}
		// It is attached to an interface that is gone, or to another: replace it.
		if err := detach(path); err != nil {
			return err
		}
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("opening pinned link %s: %w", path, err)
	}

	l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: a.prog, Attach: a.typ, Anchor: a.anchor})
	if err != nil {
		return fmt.Errorf("attaching %s to interface %d (tcx needs kernel 6.6 or newer): %w", a.prog, ifindex, err)
	}
	defer l.Close() // The pin keeps it attached.
	if err := l.Pin(path); err != nil {
		return fmt.Errorf("pinning the link of %s on interface %d to %s: %w", a.prog, ifindex, path, err)
	}
	return nil
}

// reuse keeps a pinned link that is attached where we want it, moving it onto our
// program if need be. It reports whether it did.
func (d *Dataplane) reuse(l link.Link, a attachment, ifindex int) (bool, error) {
	info, err := l.Info()
	if err != nil {
		return false, fmt.Errorf("reading a pinned link: %w", err)
	}
	tcx := info.TCX()
	if tcx == nil || int(tcx.Ifindex) != ifindex || ebpf.AttachType(tcx.AttachType) != a.typ {
		return false, nil
	}
	pinfo, err := a.prog.Info()
	if err != nil {
		return false, fmt.Errorf("reading program %s: %w", a.prog, err)
	}
	if id, ok := pinfo.ID(); ok && id == info.Program {
		return true, nil
	}
	if err := l.Update(a.prog); err != nil {
		return false, fmt.Errorf("moving the link on interface %d onto %s: %w", ifindex, a.prog, err)
	}
	return true, nil
}

// DetachPod takes egw_from_pod off a pod's veth, or forgets the link if the veth is
// gone, and then the veth's sources. It is a no-op if nothing is attached.
func (d *Dataplane) DetachPod(ifindex int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := detach(d.linkPath(podLinkName(ifindex))); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return d.deletePodSources(ifindex, nil)
}

// AttachedPods returns the ifindexes of the veths with a pinned egw_from_pod link,
// including those whose veth is gone: DetachPod cleans them up.
func (d *Dataplane) AttachedPods() ([]int, error) {
	names, err := pinnedLinks(filepath.Join(d.pinDir, linksDir))
	if err != nil {
		return nil, err
	}
	var out []int
	for _, name := range names {
		if n, err := strconv.Atoi(strings.TrimPrefix(name, podLinkPrefix)); err == nil && strings.HasPrefix(name, podLinkPrefix) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

func pinnedLinks(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing pinned links: %w", err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, nil
}

// detach detaches the link pinned at path and removes the pin. A link whose interface
// is gone detaches as a no-op.
func detach(path string) error {
	l, err := link.LoadPinnedLink(path, nil)
	if err != nil {
		return fmt.Errorf("opening pinned link %s: %w", path, err)
	}
	defer l.Close()
	if err := l.Detach(); err != nil {
		return fmt.Errorf("detaching pinned link %s: %w", path, err)
	}
	if err := l.Unpin(); err != nil {
		return fmt.Errorf("removing pinned link %s: %w", path, err)
	}
	return nil
}
