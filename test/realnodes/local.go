package realnodes

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/egressgw/egressgw/test/controlplane"
	"github.com/egressgw/egressgw/test/testenv"
	"github.com/egressgw/egressgw/test/topology"
)

// Local is a whole cluster of real nodes on this machine: a topology, a control plane as
// a cluster has it (the ServiceAccount admission plugin, token signing, aggregation, the
// kubernetes Service's endpoint on the control-plane node, kube-apiserver's traffic to
// the cluster through that node's kube-proxy), with the scheduler and the controller
// manager, and the topology's nodes made real nodes of it.
type Local struct {
	Topo *topology.Topology
	CP   *controlplane.ControlPlane
	*Cluster

	// Started is when the topology was built: the wait for another process's topology
	// (topology.New serializes them) is not the cluster's.
	Started time.Time
	egress  *EgressProxy
}

// LocalOptions shape a Local.
type LocalOptions struct {
	// Nodes is how many nodes the floating IPs' segment has (rack 1); Rack2Nodes how
	// many a second rack behind the router has (topology.Config).
	Nodes, Rack2Nodes int
	// CNI is the pods' network; PTP if empty.
	CNI CNI
}

// StartLocal starts a Local of nodes nodes with the ptp CNI: StartLocalWith.
func StartLocal(ctx context.Context, nodes int, images []string, logf func(format string, args ...any)) (*Local, error) {
	return StartLocalWith(ctx, LocalOptions{Nodes: nodes}, images, logf)
}

// StartLocalWith starts a Local shaped by opts with images imported into every node's
// containerd, and returns once every Node is Ready. logf, if not nil, hears how long each
// part took. On error everything started is stopped and removed.
func StartLocalWith(ctx context.Context, opts LocalOptions, images []string, logf func(format string, args ...any)) (_ *Local, err error) {
	if opts.CNI == "" {
		opts.CNI = PTP
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	bin, err := Binaries()
	if err != nil {
		return nil, err
	}
	lockWait := time.Now()
	l := &Local{}
	if l.Topo, err = topology.New(topology.Config{Nodes: opts.Nodes, Rack2Nodes: opts.Rack2Nodes}); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, l.Close())
		}
	}()
	logf("topology built in %s (including the wait for the machine's topology lock)", time.Since(lockWait).Round(time.Millisecond))
	if l.egress, err = StartEgressProxy(l.Topo); err != nil {
		return nil, err
	}
	l.Started = time.Now()
	if l.CP, err = controlplane.StartWith(controlplane.Options{
		Bare: true, Nodes: true, Aggregation: true, ServiceAccounts: true,
		AdvertiseAddress: topology.ControlIP.String(), EgressSelectorConfig: l.egress.Config,
	}); err != nil {
		return nil, err
	}
	if err := l.CP.StartControllers(bin); err != nil {
		return nil, err
	}
	logf("control plane with scheduler and controller manager up in %s", time.Since(l.Started).Round(time.Millisecond))
	if l.Cluster, err = Start(ctx, l.CP, l.Topo, bin, images, opts.CNI); err != nil {
		return nil, err
	}
	if err := l.WaitReady(ctx, 3*time.Minute); err != nil {
		return nil, err
	}
	logf("control plane and %d Ready nodes (%s CNI), images imported, in %s", len(l.Nodes), opts.CNI, time.Since(l.Started).Round(time.Millisecond))
	return l, nil
}

// Close stops the nodes, the control plane and the egress proxy, and removes the
// topology.
func (l *Local) Close() error {
	var errs []error
	if l.Cluster != nil {
		errs = append(errs, l.Cluster.Close())
	}
	if l.CP != nil {
		errs = append(errs, l.CP.Stop())
	}
	if l.egress != nil {
		l.egress.Close()
	}
	if l.Topo != nil {
		errs = append(errs, l.Topo.Close())
	}
	return errors.Join(errs...)
}

// RSS is the resident memory of the whole cluster (control plane, node components,
// shims, pods) in bytes, and a summary by command in MB.
func (l *Local) RSS() (int64, string, error) {
	rss, err := rssOfTree(l.Topo.ID)
	if err != nil {
		return 0, "", err
	}
	var sum int64
	var by []string
	for comm, r := range rss {
		sum += r
		by = append(by, fmt.Sprintf("%s %d", comm, r>>20))
	}
	slices.Sort(by)
	return sum, strings.Join(by, ", "), nil
}

// rssOfTree sums, by command name, the resident memory of this process's descendants
// and of the processes whose command line names a node folder (/tmp/<topology id>-...:
// the containerd shims, which leave the tree) with theirs: the pods.
func rssOfTree(topoID string) (map[string]int64, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	parent := map[int]int{}
	roots := map[int]bool{os.Getpid(): true}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(stat)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) < 2 {
			continue
		}
		parent[pid], _ = strconv.Atoi(fields[1])
		if cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && strings.Contains(string(cmdline), "/tmp/"+topoID+"-") {
			roots[pid] = true
		}
	}
	by := map[string]int64{}
	for pid := range parent {
		if pid == os.Getpid() {
			continue
		}
		for p, hops := pid, 0; p > 1 && hops < 64; p, hops = parent[p], hops+1 {
			if roots[p] {
				rss, err := testenv.ProcStatus(pid, "VmRSS")
				comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
				if err == nil {
					by[strings.TrimSpace(string(comm))] += rss
				}
				break
			}
		}
	}
	return by, nil
}
