package nodeagent

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// Options are the agent's flags. NewOptions has the defaults, which fit a real cluster;
// tests shorten the times. Run and Uninstall validate and complete them themselves, so
// no caller can skip either.
type Options struct {
	// Kubeconfig reaches the API server; empty means in-cluster.
	Kubeconfig string
	NodeName   string
	// BPFDir is a directory on a bpffs mount where maps and program links are pinned.
	BPFDir string
	// Interfaces are comma-separated glob patterns for the interfaces that may hold
	// floating IPs; none means those on a subnet of the Node's InternalIP, so that a
	// bridge's pod CIDR is never a placement subnet.
	Interfaces string
	// ClusterCIDRs (comma-separated) are never steered: the service CIDRs; every Node's pod
	// CIDRs and InternalIPs, and the subnets the agents report, are added.
	ClusterCIDRs string
	// PodCIDRs (comma-separated) are this node's pod CIDRs, for the fail-closed
	// backstop. Taken from the Node object if empty.
	PodCIDRs  string
	Heartbeat HeartbeatOptions
	FlowCopy  FlowCopyOptions
	// Resync is how often a pass runs with no change, to repair the kernel state.
	Resync time.Duration
	// ProbeAddr serves /healthz and /readyz; MetricsAddr serves /metrics, over TLS, to
	// clients that may get it ("0": not at all).
	ProbeAddr, MetricsAddr string
	// Uninstall removes what the agent put on the node instead of running it.
	Uninstall bool

	// parsed is set by Complete.
	parsed parsedOptions
}

// HeartbeatOptions time the node's grant: how long a renewal grants the node its IPs,
// and how it is renewed.
type HeartbeatOptions struct {
	// LeaseDuration is how long a renewal grants the node its floating IPs: whole
	// milliseconds, at least 300.
	LeaseDuration time.Duration
	// RenewInterval is how often the heartbeat Lease is renewed while the leader does
	// not answer heartbeats.
	RenewInterval time.Duration
	// ControllerLease (namespace/name) is the controller's leader election Lease, whose
	// holder says where to send UDP heartbeats; empty: no heartbeats, Lease renewals only.
	ControllerLease string
	// Interval is how often a UDP heartbeat goes to the leader.
	Interval time.Duration
	// LeaseRefresh is how often the heartbeat Lease is written while the leader answers.
	LeaseRefresh time.Duration
	// KeyRotation is how often the agent makes a new heartbeat key (it makes one at every
	// start too); zero: only at start.
	KeyRotation time.Duration
}

// FlowCopyOptions tune the copy of a gateway's conntrack entries to its standbys
// (standby.go). It needs the direct channel (--controller-lease), whose keys seal it.
type FlowCopyOptions struct {
	// Port is the UDP port agents take copies on; 0 turns the copy off.
	Port uint16
	// MaxEntries bounds the entries a standby keeps, and so its memory.
	MaxEntries int
	// Handover bounds the wait, when the node lets an IP go, for the standby to
	// acknowledge the last changes.
	Handover time.Duration
}

// parsedOptions are the list flags, parsed.
type parsedOptions struct {
	interfaces             []string
	clusterCIDRs, podCIDRs []netip.Prefix
	// leaseNamespace and leaseName are Heartbeat.ControllerLease's; empty without it.
	leaseNamespace, leaseName string
}

// NewOptions returns the defaults, fit for the manifests in artifacts/nodeagent.
func NewOptions() *Options {
	return &Options{
		NodeName: os.Getenv("NODE_NAME"),
		BPFDir:   "/sys/fs/bpf/egressgw",
		Heartbeat: HeartbeatOptions{
			LeaseDuration:   time.Second,
			RenewInterval:   250 * time.Millisecond,
			ControllerLease: "egressgw-system/egressgw-controller",
			Interval:        100 * time.Millisecond,
			LeaseRefresh:    10 * time.Second,
			KeyRotation:     24 * time.Hour,
		},
		FlowCopy:    FlowCopyOptions{Port: 7473, MaxEntries: 200_000, Handover: 100 * time.Millisecond},
		Resync:      30 * time.Second,
		ProbeAddr:   ":9464",
		MetricsAddr: ":9465",
	}
}

// AddFlags adds the options to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "kubeconfig; in-cluster config if empty")
	fs.StringVar(&o.NodeName, "node-name", o.NodeName, "this node's name (default $NODE_NAME)")
	fs.StringVar(&o.BPFDir, "bpf-dir", o.BPFDir, "directory on a bpffs mount for pinned maps and links")
	fs.StringVar(&o.Interfaces, "interfaces", o.Interfaces, "comma-separated glob patterns (such as eth*) of the interfaces that may hold floating IPs (they get a loose rp_filter); default: the one on a subnet of the Node's InternalIP")
	fs.StringVar(&o.ClusterCIDRs, "cluster-cidrs", o.ClusterCIDRs, "comma-separated in-cluster CIDRs (services, and pod pools the Nodes' spec.podCIDRs miss) that are never steered; every Node's pod CIDRs and InternalIPs, and the node subnets the agents report, are added")
	fs.StringVar(&o.PodCIDRs, "pod-cidrs", o.PodCIDRs, "comma-separated pod CIDRs of this node (default: from its Node object)")
	h := &o.Heartbeat
	fs.DurationVar(&h.LeaseDuration, "lease-duration", h.LeaseDuration, "how long one heartbeat grants this node its floating IPs (whole milliseconds, at least 300ms)")
	fs.DurationVar(&h.RenewInterval, "renew-interval", h.RenewInterval, "how often the heartbeat Lease is renewed while the controller's leader does not answer UDP heartbeats")
	fs.StringVar(&h.ControllerLease, "controller-lease", h.ControllerLease, "namespace/name of the controller's leader election Lease, whose holder says where UDP heartbeats go; empty: Lease renewals only")
	fs.DurationVar(&h.Interval, "heartbeat-interval", h.Interval, "how often a UDP heartbeat goes to the controller's leader")
	fs.DurationVar(&h.LeaseRefresh, "lease-refresh", h.LeaseRefresh, "how often the heartbeat Lease is written while the leader answers UDP heartbeats")
	fs.DurationVar(&h.KeyRotation, "heartbeat-key-rotation", h.KeyRotation, "how often a new key authenticates the UDP heartbeats (one is made at every start too); 0: only at start")
	fs.Uint16Var(&o.FlowCopy.Port, "flow-copy-port", o.FlowCopy.Port, "UDP port on which the agent takes copies of other gateways' conntrack entries, and to which it sends its own to each floating IP's standby, so that connections survive a failover; 0 turns the copy off (it needs --controller-lease)")
	fs.IntVar(&o.FlowCopy.MaxEntries, "flow-copy-max-entries", o.FlowCopy.MaxEntries, "the most copied conntrack entries this node keeps as a standby (about 100 bytes of memory each)")
	fs.DurationVar(&o.FlowCopy.Handover, "flow-copy-handover", o.FlowCopy.Handover, "how long a node letting a floating IP go waits for its standby to acknowledge the last conntrack changes")
	fs.DurationVar(&o.Resync, "resync", o.Resync, "how often to repair the kernel state with no change seen")
	fs.StringVar(&o.ProbeAddr, "probe-bind-address", o.ProbeAddr, "address of /healthz and /readyz, for the kubelet")
	fs.StringVar(&o.MetricsAddr, "metrics-bind-address", o.MetricsAddr, "address of /metrics, over TLS, for clients with a token that may get /metrics; 0 disables")
	fs.BoolVar(&o.Uninstall, "uninstall", o.Uninstall, "remove everything the agent put on this node (IPs, nft table, routing rules, BPF programs and maps) and exit")
}

// Validate says what is wrong with the options, every problem, naming the flag to fix.
// With --uninstall it checks only what the uninstall reads: --bpf-dir, and that the
// list flags parse (a bad one is a mistake in the manifest, whichever the mode). The
// node name, the API server and the heartbeat's timing play no part in it: it reads and
// writes the node's kernel only.
func (o *Options) Validate() error {
	var errs []error
	if o.NodeName == "" && !o.Uninstall {
		errs = append(errs, errors.New("--node-name is required (the downward API's spec.nodeName)"))
	}
	if !o.Uninstall {
		errs = append(errs, o.Heartbeat.validate()...)
		if o.FlowCopy.Port != 0 && o.FlowCopy.MaxEntries < 1 {
			errs = append(errs, fmt.Errorf("--flow-copy-max-entries must be at least 1, not %d (or turn the copy off with --flow-copy-port=0)", o.FlowCopy.MaxEntries))
		}
		if o.FlowCopy.Port != 0 && (o.FlowCopy.Handover < 0 || o.FlowCopy.Handover > 5*time.Second) {
			errs = append(errs, fmt.Errorf("--flow-copy-handover must be between 0 and 5s, not %s: a planned move waits for it", o.FlowCopy.Handover))
		}
	}
	if o.BPFDir == "" {
		errs = append(errs, errors.New("--bpf-dir is required (a directory on a bpffs mount)"))
	}
	for _, f := range []struct{ flag, list string }{{"--cluster-cidrs", o.ClusterCIDRs}, {"--pod-cidrs", o.PodCIDRs}} {
		if _, err := prefixes(f.list); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.flag, err))
		}
	}
	return errors.Join(errs...)
}

func (h HeartbeatOptions) validate() []error {
	var errs []error
	if h.LeaseDuration < 300*time.Millisecond || h.LeaseDuration%time.Millisecond != 0 {
		errs = append(errs, fmt.Errorf("--lease-duration %s must be a whole number of milliseconds, at least 300ms", h.LeaseDuration))
	}
	if h.RenewInterval <= 0 || h.RenewInterval*2 > h.LeaseDuration {
		errs = append(errs, fmt.Errorf("--renew-interval %s must be positive and at most half of --lease-duration %s, or one slow renewal drops the node's IPs", h.RenewInterval, h.LeaseDuration))
	}
	if h.ControllerLease == "" {
		return errs
	}
	if h.Interval <= 0 || h.Interval*3 > h.LeaseDuration {
		errs = append(errs, fmt.Errorf("--heartbeat-interval %s must be positive and at most a third of --lease-duration %s, so one lost heartbeat does not drop the node's IPs", h.Interval, h.LeaseDuration))
	}
	if h.KeyRotation < 0 || h.KeyRotation > 0 && h.KeyRotation < 10*h.Interval {
		errs = append(errs, fmt.Errorf("--heartbeat-key-rotation %s must be 0 (at start only) or at least ten --heartbeat-interval %s: a rotation takes a few heartbeats", h.KeyRotation, h.Interval))
	}
	if h.LeaseRefresh < h.RenewInterval {
		errs = append(errs, fmt.Errorf("--lease-refresh %s must be at least --renew-interval %s", h.LeaseRefresh, h.RenewInterval))
	}
	if ns, name, ok := strings.Cut(h.ControllerLease, "/"); !ok || ns == "" || name == "" {
		errs = append(errs, fmt.Errorf("--controller-lease %q must be namespace/name", h.ControllerLease))
	}
	return errs
}

// Complete parses the list flags. Validate first: Complete reports only the first problem.
func (o *Options) Complete() error {
	var p parsedOptions
	for _, s := range strings.Split(o.Interfaces, ",") {
		if s = strings.TrimSpace(s); s != "" {
			p.interfaces = append(p.interfaces, s)
		}
	}
	var err error
	if p.clusterCIDRs, err = prefixes(o.ClusterCIDRs); err != nil {
		return fmt.Errorf("--cluster-cidrs: %w", err)
	}
	if p.podCIDRs, err = prefixes(o.PodCIDRs); err != nil {
		return fmt.Errorf("--pod-cidrs: %w", err)
	}
	if o.Heartbeat.ControllerLease != "" {
		p.leaseNamespace, p.leaseName, _ = strings.Cut(o.Heartbeat.ControllerLease, "/")
	}
	o.parsed = p
	return nil
}

// validComplete validates and completes the options, for Run and Uninstall.
func (o *Options) validComplete() error {
	if err := o.Validate(); err != nil {
		return err
	}
	return o.Complete()
}

// prefixes parses a comma-separated list of IPv4 CIDRs, masked.
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
