package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Dataplane is the loaded programs and their pinned maps and links. Its methods are
// safe for concurrent use. Close it when done: the pinned maps and links stay, so the
// programs keep running until the next Load takes them over or Uninstall removes them.
type Dataplane struct {
	pinDir string
	objs   egwObjects
	// routesSpec makes each set's routes trie, egw_set_routes' inner map.
	routesSpec *ebpf.MapSpec

	mu sync.Mutex // serializes writers: Sync, grants, attachments
	// have is what the routing maps hold after the last Sync, nil until read.
	have *state
	// writes counts map writes, and afterWrite, when set, runs after each one: tests
	// use them to see that an unchanged table writes nothing, and to probe the
	// programs between any two writes.
	writes     int
	afterWrite func()
}

// pinnedMaps are the maps egw.h pins by name: Uninstall removes exactly these.
var pinnedMaps = []string{egwMapEgwPods, egwMapEgwPodSources, egwMapEgwSetRoutes, egwMapEgwEgress, egwMapEgwGrants, egwMapEgwUplinks, egwMapEgwRouted, egwMapEgwPodCidrs, egwMapEgwSnatDsts, egwMapEgwNodes, egwMapEgwStats}

// Load loads the programs, reusing the maps pinned under pinDir (a directory on a bpffs
// mount, created if missing) or pinning new ones there, and moves the links pinned there
// by an earlier Load onto the new programs, atomically, so that no packet is missed.
func Load(pinDir string) (*Dataplane, error) {
	if err := ensurePinDir(pinDir); err != nil {
		return nil, err
	}
	spec, err := loadEgw()
	if err != nil {
		return nil, fmt.Errorf("reading the embedded BPF object: %w", err)
	}
	if err := dropOldCounters(pinDir, spec.Maps[egwMapEgwStats]); err != nil {
		return nil, err
	}
	d := &Dataplane{pinDir: pinDir, routesSpec: spec.Maps[egwMapEgwSetRoutes].InnerMap.Copy()}
	opts := &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: pinDir}}
	if err := spec.LoadAndAssign(&d.objs, opts); err != nil {
		if errors.Is(err, ebpf.ErrMapIncompatible) {
			return nil, fmt.Errorf("a map pinned under %s was created by a build with another layout: %w; "+
				"remove the old pins (bpf.Uninstall, or rm -r %s) and load again", pinDir, err, pinDir)
		}
		// A *ebpf.VerifierError in err prints the verifier's whole log with %+v.
		return nil, fmt.Errorf("loading the BPF programs and maps pinned under %s (the kernel must be 6.6 or newer, for tcx): %w", pinDir, err)
	}
	if err := d.updateLinks(); err != nil {
		d.objs.Close()
		return nil, err
	}
	return d, nil
}

// dropOldCounters unpins egw_stats if an earlier build pinned it with another number of
// counters: it holds only counters, so a new one is made and the upgrade goes on, where
// any other map of another layout stops the load.
func dropOldCounters(pinDir string, spec *ebpf.MapSpec) error {
	path := filepath.Join(pinDir, egwMapEgwStats)
	m, err := ebpf.LoadPinnedMap(path, nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("opening the pinned %s: %w", egwMapEgwStats, err)
	}
	defer m.Close()
	if m.MaxEntries() == spec.MaxEntries {
		return nil
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("unpinning %s of an earlier build (%d counters, now %d): %w", egwMapEgwStats, m.MaxEntries(), spec.MaxEntries, err)
	}
	return nil
}

func ensurePinDir(pinDir string) error {
	if err := os.MkdirAll(filepath.Join(pinDir, linksDir), 0o700); err != nil {
		return fmt.Errorf("creating the pin directory: %w", err)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(pinDir, &fs); err != nil {
		return fmt.Errorf("checking the pin directory %s: %w", pinDir, err)
	}
	if fs.Type != unix.BPF_FS_MAGIC {
		return fmt.Errorf("%s is not on a bpffs mount, so pins would not survive a restart: mount one (mount -t bpf bpf /sys/fs/bpf) and pin under it", pinDir)
	}
	return nil
}

// Close releases the programs and maps. Their pins and links stay in place.
func (d *Dataplane) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.objs.Close()
}

// Uninstall detaches every program that Load's links under pinDir attached, and
// removes the links, the maps and pinDir itself, leaving nothing on the node. Close
// any Dataplane loaded from pinDir as well, to unload its programs.
func Uninstall(pinDir string) error {
	links := filepath.Join(pinDir, linksDir)
	names, err := pinnedLinks(links)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var errs []error
	for _, name := range names {
		if err := detach(filepath.Join(links, name)); err != nil {
			errs = append(errs, err)
		}
	}
	for _, name := range pinnedMaps {
		if err := os.Remove(filepath.Join(pinDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("removing pinned map %s: %w", name, err))
		}
	}
	for _, dir := range []string{links, pinDir} {
		if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("removing %s (are there pins egressgw did not make? remove them by hand): %w", dir, err))
		}
	}
	return errors.Join(errs...)
}

// Stats returns the packets counted on each verdict path, summed over CPUs.
func (d *Dataplane) Stats() (map[string]uint64, error) {
	out := make(map[string]uint64, len(statNames))
	var perCPU []statValue
	for i, name := range statNames {
		if err := d.objs.EgwStats.Lookup(uint32(i), &perCPU); err != nil {
			return nil, fmt.Errorf("reading counter %s from egw_stats: %w", name, err)
		}
		var n uint64
		for _, v := range perCPU {
			n += v.Packets
		}
		out[name] = n
	}
	return out, nil
}
