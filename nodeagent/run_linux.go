package nodeagent

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/egressgw/egressgw/bpf"
	"github.com/egressgw/egressgw/nodeagent/floatingip"
	"github.com/egressgw/egressgw/nodeagent/flowcopy"
)

// Run runs the agent on this node until ctx ends: it loads the BPF programs (keeping
// pinned maps and links from a previous run), serves probes and metrics, and programs the
// dataplane on every change. On return the kernel state stays, so a restart interrupts no
// flow; Uninstall removes it. It loads the kubeconfig (in-cluster without --kubeconfig).
func Run(ctx context.Context, opts *Options) error {
	if err := opts.validComplete(); err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", opts.Kubeconfig)
	if err != nil {
		return fmt.Errorf("loading the kubeconfig (--kubeconfig, or in-cluster without it): %w", err)
	}
	if err := ensureBPFFS(opts.BPFDir); err != nil {
		return err
	}
	dp, err := bpf.Load(opts.BPFDir)
	if err != nil {
		return fmt.Errorf("loading the BPF programs: %w", err)
	}
	defer dp.Close()
	c, err := connect(cfg, opts)
	if err != nil {
		return err
	}
	fips := floatingip.New(floatingip.Options{Interfaces: opts.parsed.interfaces})
	reg := newRegistry()
	a, err := newAgent(*opts, c, kernel{dp: dp, fips: fips, host: linuxHost{}, now: monotonic}, reg)
	if err != nil {
		return err
	}
	if opts.FlowCopy.Port != 0 && a.report.keys != nil {
		ct, err := flowcopy.Open(ctZone)
		if err != nil {
			return err
		}
		defer ct.Close()
		a.standbys = newStandbys(*opts, ct, a.report.keys, flowcopy.NewMetrics(reg))
	}
	registerHolderMetrics(reg, fips)
	if _, err := serveProbes(ctx, opts.ProbeAddr, a.Ready); err != nil {
		return err
	}
	if err := serveMetrics(ctx, opts.MetricsAddr, cfg); err != nil {
		return err
	}
	return a.run(ctx)
}

// Uninstall removes everything an agent put on this node: floating IPs, BPF programs and
// pinned maps, the nft table, and the routing rules and table. It reads the kernel only,
// never the API server.
func Uninstall(opts *Options) error {
	if err := opts.validComplete(); err != nil {
		return err
	}
	var errs []error
	if err := floatingip.New(floatingip.Options{Interfaces: opts.parsed.interfaces}).ReleaseAll(); err != nil {
		errs = append(errs, fmt.Errorf("releasing floating IPs: %w", err))
	}
	if err := bpf.Uninstall(opts.BPFDir); err != nil {
		errs = append(errs, fmt.Errorf("removing BPF programs and maps: %w", err))
	}
	if err := RemoveHost(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		klog.InfoS("Removed everything the node agent had put on this node", "node", opts.NodeName)
	}
	return errors.Join(errs...)
}

// ensureBPFFS checks that dir's parent is on a bpffs mount, where pins survive the agent.
func ensureBPFFS(dir string) error {
	parent := dir
	for i := len(dir) - 1; i > 0; i-- {
		if dir[i] == '/' {
			parent = dir[:i]
			break
		}
	}
	var st unix.Statfs_t
	if err := unix.Statfs(parent, &st); err != nil {
		return fmt.Errorf("--bpf-dir %s: %w; mount bpffs (mount -t bpf bpf /sys/fs/bpf)", dir, err)
	}
	if st.Type != unix.BPF_FS_MAGIC {
		return fmt.Errorf("--bpf-dir %s is not on a bpffs mount: mount one (mount -t bpf bpf /sys/fs/bpf) or mount the host's /sys/fs/bpf into the agent's pod", dir)
	}
	return nil
}
