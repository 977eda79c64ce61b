package controller

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/spf13/pflag"

	"github.com/egressgw/egressgw/apiserver/heartbeat"
)

// Options are the controller's flags. NewOptions has the defaults, which fit the
// manifests in artifacts/controller; tests build Options themselves. New validates and
// completes them itself, so no caller can skip either.
type Options struct {
	// Kubeconfig reaches the API server; empty means $KUBECONFIG, then in-cluster, then
	// ~/.kube/config (controller-runtime's order).
	Kubeconfig string
	// LeaderElection makes replicas take turns; Election.Namespace holds the Lease.
	LeaderElection bool
	Election       ElectionOptions
	// HeartbeatAddr is where the leader answers node agents' UDP heartbeats (host:port);
	// empty turns the direct channel off, and agents renew their Leases instead.
	// HeartbeatAdvertise is the address agents send to; Complete makes it HeartbeatAddr
	// if empty.
	HeartbeatAddr, HeartbeatAdvertise string
	// Grace is how long past a heartbeat Lease's duration a node is still Up.
	Grace time.Duration
	// MetricsAddr serves /metrics; ProbeAddr serves /healthz and /readyz. "0" disables.
	MetricsAddr, ProbeAddr string
	// SeveralInProcess allows more than one replica in one process, as tests run them.
	SeveralInProcess bool
}

// NewOptions returns the defaults.
func NewOptions() *Options {
	return &Options{
		LeaderElection: true,
		Election: ElectionOptions{
			Namespace:     "egressgw-system",
			LeaseDuration: 15 * time.Second,
			RenewDeadline: 10 * time.Second,
			RetryPeriod:   2 * time.Second,
			AckHold:       90 * time.Second,
		},
		Grace:       500 * time.Millisecond,
		MetricsAddr: ":8443",
		ProbeAddr:   ":8081",
	}
}

// AddFlags adds the options to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "Paths to a kubeconfig. Only required if out-of-cluster.")
	fs.BoolVar(&o.LeaderElection, "leader-elect", o.LeaderElection, "take turns with other replicas through a Lease")
	fs.StringVar(&o.Election.Namespace, "leader-election-namespace", o.Election.Namespace, "namespace of the leader election Lease")
	fs.DurationVar(&o.Election.LeaseDuration, "leader-elect-lease-duration", o.Election.LeaseDuration, "how long a leader election Lease lasts; a replica that crashed is replaced after this")
	fs.DurationVar(&o.Election.RenewDeadline, "leader-elect-renew-deadline", o.Election.RenewDeadline, "how long the leader retries renewing before it stops placing")
	fs.DurationVar(&o.Election.RetryPeriod, "leader-elect-retry-period", o.Election.RetryPeriod, "how often replicas try to take or renew the leadership")
	fs.DurationVar(&o.Election.AckHold, "heartbeat-hold", o.Election.AckHold,
		"how long after its last leadership renewal the leader still answers heartbeats: the longest API server outage traffic rides out; a new leader waits this long before it declares Down a node that never sent it a heartbeat")
	fs.StringVar(&o.HeartbeatAddr, "heartbeat-bind-address", o.HeartbeatAddr, "host:port where the leader answers node agents' UDP heartbeats; empty: agents renew their Leases instead")
	fs.StringVar(&o.HeartbeatAdvertise, "heartbeat-advertise-address", o.HeartbeatAdvertise, "host:port agents send heartbeats to, if not --heartbeat-bind-address (e.g. $(POD_IP):7471)")
	fs.DurationVar(&o.Grace, "grace", o.Grace, "how long past its heartbeat Lease's duration a node is still Up")
	fs.StringVar(&o.MetricsAddr, "metrics-bind-address", o.MetricsAddr, "address of /metrics, over TLS, for clients with a token that may get /metrics; 0 disables")
	fs.StringVar(&o.ProbeAddr, "health-probe-bind-address", o.ProbeAddr, "address of /healthz and /readyz; 0 disables")
}

// Validate says what is wrong with the options, every problem at once, naming the flag
// to fix.
func (o *Options) Validate() error {
	var errs []error
	if o.LeaderElection {
		e := o.Election
		if e.Namespace == "" {
			errs = append(errs, errors.New("--leader-election-namespace is required with --leader-elect: the namespace the controller's Role lets it hold its Lease in, such as egressgw-system"))
		}
		if e.RetryPeriod <= 0 || e.RenewDeadline <= e.RetryPeriod || e.LeaseDuration <= e.RenewDeadline {
			errs = append(errs, fmt.Errorf("--leader-elect-lease-duration %s must exceed --leader-elect-renew-deadline %s, which must exceed --leader-elect-retry-period %s (> 0)",
				e.LeaseDuration, e.RenewDeadline, e.RetryPeriod))
		}
		if e.AckHold < e.LeaseDuration {
			errs = append(errs, fmt.Errorf("--heartbeat-hold %s must be at least --leader-elect-lease-duration %s", e.AckHold, e.LeaseDuration))
		}
	}
	if o.HeartbeatAddr != "" {
		if _, err := netip.ParseAddrPort(o.HeartbeatAddr); err != nil {
			errs = append(errs, fmt.Errorf("--heartbeat-bind-address %q must be ip:port: %w", o.HeartbeatAddr, err))
		}
		if ap, err := netip.ParseAddrPort(o.advertise()); err != nil || ap.Addr().IsUnspecified() || ap.Port() == 0 {
			errs = append(errs, fmt.Errorf("--heartbeat-advertise-address %q must be an ip:port the node agents reach, such as $(POD_IP):7471 (needed when --heartbeat-bind-address listens on every address)", o.advertise()))
		}
	}
	if o.HeartbeatAddr != "" && !o.LeaderElection {
		errs = append(errs, errors.New("--heartbeat-bind-address needs --leader-elect: agents learn where to send heartbeats, and the key answers are authenticated with, from the leader election Lease"))
	}
	if o.Grace < 0 {
		errs = append(errs, fmt.Errorf("--grace %s must not be negative: it is how long past its Lease a node is still Up, such as 500ms", o.Grace))
	}
	return errors.Join(errs...)
}

// Complete derives what the options imply: agents send heartbeats to the bind address
// unless another is advertised.
func (o *Options) Complete() error {
	o.HeartbeatAdvertise = o.advertise()
	return nil
}

func (o *Options) advertise() string {
	if o.HeartbeatAdvertise == "" {
		return o.HeartbeatAddr
	}
	return o.HeartbeatAdvertise
}

// heartbeatIdentity returns what a replica's identity carries for the agents: the address
// they send beats to and the key its answers are authenticated with; nil without beats.
func (o *Options) heartbeatIdentity(key heartbeat.PublicKey) func(replica string) string {
	if o.HeartbeatAddr == "" {
		return nil
	}
	addr := netip.MustParseAddrPort(o.advertise()) // Validate checked it
	return func(replica string) string { return heartbeat.LeaderIdentity(replica, addr, key) }
}
