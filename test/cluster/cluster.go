// Package cluster runs the whole system on one machine: a real etcd and kube-apiserver,
// the webhook server, the controller, the aggregated API server, and one node agent per
// node of a network-namespace topology (package topology). There is no kubelet: the harness stands in for it, and
// registers the Node and Pod objects that match the namespaces it creates, with their
// pod IPs and node names. The tests, the end-to-end suite and `make run HARNESS=1` use it.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/client-go/kubernetes"

	versioned "github.com/egressgw/egressgw/apiserver/client/clientset/versioned"
	"github.com/egressgw/egressgw/test/controlplane"
	"github.com/egressgw/egressgw/test/topology"
)

// Options shape a cluster.
type Options struct {
	// Nodes is the number of nodes; 3 if zero.
	Nodes int
	// Rack2Nodes is the number of nodes of a second rack (topology.Config.Rack2Nodes),
	// after the others; none if zero.
	Rack2Nodes int
	// ControlPlane names nodes (1-based) labelled as control-plane nodes.
	ControlPlane []int
	// Controllers is the number of controller replicas; 1 if zero.
	Controllers int
	// LeaseDuration is the agents' heartbeat grant; 2 s if zero. RenewInterval is a
	// quarter of it.
	LeaseDuration time.Duration
	// Grace is the controller's grace past a lease; 500 ms if zero.
	Grace time.Duration
	// NoAgents leaves the agents to the caller (StartAgent).
	NoAgents bool
	// Logs is where component logs go; a fresh temporary folder if empty.
	Logs string
}

// ServiceCIDR is the cluster's service range, never steered.
var ServiceCIDR = netip.MustParsePrefix("10.0.0.0/24")

// Cluster is a running system.
type Cluster struct {
	CP   *controlplane.ControlPlane
	Topo *topology.Topology
	Kube kubernetes.Interface
	Net  versioned.Interface
	// Bin holds the built binaries; Logs the components' logs.
	Bin, Logs string
	// NodeKubeconfig reaches the API server from inside the nodes' namespaces.
	NodeKubeconfig string

	opts        Options
	proxy       *apiProxy
	controllers []*Process
	agents      map[string]*Process
	aggregated  *Process

	// The token the harness reads the agents' metrics with, made on first use.
	metricsOnce sync.Once
	metricsTok  string
	metricsErr  error
}

// Start brings the whole system up. On error it removes what it started.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.Controllers == 0 {
		opts.Controllers = 1
	}
	if opts.LeaseDuration == 0 {
		opts.LeaseDuration = 2 * time.Second
	}
	if opts.Grace == 0 {
		opts.Grace = 500 * time.Millisecond
	}
	c := &Cluster{opts: opts, agents: map[string]*Process{}}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Close())
		}
	}()
	if c.Logs = opts.Logs; c.Logs == "" {
		if c.Logs, err = os.MkdirTemp("", "egressgw-logs-"); err != nil {
			return nil, err
		}
	}
	if err := mountBPFFS(); err != nil {
		return nil, err
	}
	if c.Bin, err = Build(ctx); err != nil {
		return nil, err
	}
	if c.Topo, err = topology.New(topology.Config{Nodes: opts.Nodes, Rack2Nodes: opts.Rack2Nodes}); err != nil {
		return nil, err
	}
	if c.CP, err = controlplane.StartWith(controlplane.Options{Aggregation: true}); err != nil {
		return nil, err
	}
	if c.Kube, err = kubernetes.NewForConfig(c.CP.Config); err != nil {
		return nil, err
	}
	if c.Net, err = versioned.NewForConfig(c.CP.Config); err != nil {
		return nil, err
	}
	if c.proxy, err = startAPIProxy(c.Topo.Control, c.CP.Config.Host); err != nil {
		return nil, err
	}
	if c.NodeKubeconfig, err = writeNodeKubeconfig(c.CP, c.proxy.addr, filepath.Join(c.Logs, "node-kubeconfig")); err != nil {
		return nil, err
	}
	if err := c.registerNodes(ctx); err != nil {
		return nil, err
	}
	for i := 0; i < opts.Controllers; i++ {
		if err := c.StartController(i); err != nil {
			return nil, err
		}
	}
	if err := c.startAggregated(ctx); err != nil {
		return nil, err
	}
	if !opts.NoAgents {
		for _, n := range c.Topo.Nodes {
			if err := c.StartAgent(n.Name); err != nil {
				return nil, err
			}
		}
	}
	return c, nil
}

// Node returns the topology node of that name.
func (c *Cluster) Node(name string) *topology.Node {
	for _, n := range c.Topo.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Kubectl runs kubectl as the administrator.
func (c *Cluster) Kubectl(stdin []byte, args ...string) (string, error) {
	return c.CP.Kubectl(stdin, args...)
}

// Close stops every component and removes the namespaces, the API server and the
// agents' kernel state.
func (c *Cluster) Close() error {
	var errs []error
	for name, p := range c.agents {
		errs = append(errs, p.Stop())
		errs = append(errs, c.uninstallAgent(name))
	}
	for _, p := range c.controllers {
		errs = append(errs, p.Stop())
	}
	if c.aggregated != nil {
		errs = append(errs, c.aggregated.Stop())
	}
	if c.proxy != nil {
		c.proxy.close()
	}
	if c.Topo != nil {
		errs = append(errs, c.Topo.Close())
	}
	if c.CP != nil {
		errs = append(errs, c.CP.Stop())
	}
	return errors.Join(errs...)
}

// bpffsMount is a bpffs outside /sys: `ip netns exec` mounts a fresh /sys for the
// namespace, which hides /sys/fs/bpf, but keeps /run.
const bpffsMount = "/run/egressgw/bpffs"

// bpfDir is where a node's agent pins its maps and links: one bpffs serves every
// simulated node, so each gets its own folder.
func (c *Cluster) bpfDir(node string) string {
	return fmt.Sprintf("%s/%s-%s", bpffsMount, c.Topo.ID, node)
}

// mountBPFFS mounts bpffsMount unless it is mounted already.
func mountBPFFS() error {
	var st unix.Statfs_t
	if err := unix.Statfs(bpffsMount, &st); err == nil && st.Type == unix.BPF_FS_MAGIC {
		return nil
	}
	if err := os.MkdirAll(bpffsMount, 0o700); err != nil {
		return err
	}
	if err := unix.Mount("bpf", bpffsMount, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mounting bpffs on %s: %w", bpffsMount, err)
	}
	return nil
}
