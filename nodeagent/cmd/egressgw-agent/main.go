// Command egressgw-agent programs one node's egress dataplane and holds the floating IPs
// the controller grants the node.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/egressgw/egressgw/nodeagent"
)

func main() {
	opts := nodeagent.Options{}
	var kubeconfig, cluster, pods string
	var uninstall bool
	flag.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig; in-cluster config if empty")
	flag.StringVar(&opts.NodeName, "node-name", os.Getenv("NODE_NAME"), "this node's name (default $NODE_NAME)")
	flag.StringVar(&opts.BPFDir, "bpf-dir", "/sys/fs/bpf/egressgw", "directory on a bpffs mount for pinned maps and links")
	var ifaces string
	flag.StringVar(&ifaces, "interfaces", "", "comma-separated glob patterns (such as eth*) of the interfaces that may hold floating IPs; default: any whose subnet contains the IP")
	flag.StringVar(&cluster, "cluster-cidrs", "", "comma-separated in-cluster CIDRs (services, nodes) that are never steered; every Node's pod CIDRs are added")
	flag.StringVar(&pods, "pod-cidrs", "", "comma-separated pod CIDRs of this node (default: from its Node object)")
	flag.DurationVar(&opts.LeaseDuration, "lease-duration", time.Second, "how long one heartbeat grants this node its floating IPs (whole milliseconds, at least 300ms)")
	flag.DurationVar(&opts.RenewInterval, "renew-interval", 250*time.Millisecond, "how often the heartbeat Lease is renewed while the controller's leader does not answer UDP heartbeats")
	flag.StringVar(&opts.ControllerLease, "controller-lease", "egressgw-system/egressgw-controller", "namespace/name of the controller's leader election Lease, whose holder says where UDP heartbeats go; empty: Lease renewals only")
	flag.DurationVar(&opts.HeartbeatInterval, "heartbeat-interval", 100*time.Millisecond, "how often a UDP heartbeat goes to the controller's leader")
	flag.DurationVar(&opts.LeaseRefresh, "lease-refresh", 10*time.Second, "how often the heartbeat Lease is written while the leader answers UDP heartbeats")
	flag.DurationVar(&opts.Resync, "resync", 30*time.Second, "how often to repair the kernel state with no change seen")
	flag.StringVar(&opts.ProbeAddr, "probe-bind-address", ":9464", "address of /healthz, /readyz and /metrics")
	flag.BoolVar(&uninstall, "uninstall", false, "remove everything the agent put on this node (IPs, nft table, routing rules, BPF programs and maps) and exit")
	klog.InitFlags(nil)
	flag.Parse()

	var err error
	for _, p := range strings.Split(ifaces, ",") {
		if p = strings.TrimSpace(p); p != "" {
			opts.Interfaces = append(opts.Interfaces, p)
		}
	}
	if opts.ClusterCIDRs, err = prefixes(cluster); err != nil {
		klog.ErrorS(err, "Bad --cluster-cidrs")
		os.Exit(2)
	}
	if opts.PodCIDRs, err = prefixes(pods); err != nil {
		klog.ErrorS(err, "Bad --pod-cidrs")
		os.Exit(2)
	}
	if uninstall {
		if err := nodeagent.Uninstall(opts); err != nil {
			klog.ErrorS(err, "Uninstall incomplete")
			os.Exit(1)
		}
		return
	}
	if err := opts.Validate(); err != nil {
		klog.ErrorS(err, "Bad options")
		os.Exit(2)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		klog.ErrorS(err, "Loading kubeconfig")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := nodeagent.Run(ctx, opts, cfg); err != nil {
		klog.ErrorS(err, "egressgw-agent failed")
		os.Exit(1)
	}
}

func prefixes(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil || !p.Addr().Is4() {
			return nil, fmt.Errorf("%q is not an IPv4 CIDR such as 10.96.0.0/12", s)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
