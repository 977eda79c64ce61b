package nodeagent

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Options configure an agent. Defaults fit a real cluster; tests shorten the times.
type Options struct {
	NodeName string
	// BPFDir is a directory on a bpffs mount where maps and program links are pinned.
	BPFDir string
	// Interfaces are glob patterns for the interfaces that may hold floating IPs; none
	// means any interface whose subnet contains the IP.
	Interfaces []string
	// ClusterCIDRs are never steered (service and node CIDRs; pod CIDRs of every Node are
	// added from the Node objects).
	ClusterCIDRs []netip.Prefix
	// PodCIDRs are this node's pod CIDRs, for the fail-closed backstop. Taken from the
	// Node object if empty.
	PodCIDRs []netip.Prefix
	// LeaseDuration is how long a renewal grants the node its floating IPs: whole
	// milliseconds, at least 300.
	LeaseDuration time.Duration
	// RenewInterval is how often the heartbeat Lease is renewed while the leader does
	// not answer heartbeats.
	RenewInterval time.Duration
	// ControllerLease (namespace/name) is the controller's leader election Lease, whose
	// holder says where to send UDP heartbeats; empty: no heartbeats, Lease renewals only.
	ControllerLease string
	// HeartbeatInterval is how often a UDP heartbeat goes to the leader.
	HeartbeatInterval time.Duration
	// LeaseRefresh is how often the heartbeat Lease is written while the leader answers.
	LeaseRefresh time.Duration
	// Resync is how often a pass runs with no change, to repair the kernel state.
	Resync time.Duration
	// ProbeAddr serves /healthz, /readyz and /metrics.
	ProbeAddr string
}

// Validate says what is wrong with the options, naming the flag to fix.
func (o *Options) Validate() error {
	var errs []error
	if o.NodeName == "" {
		errs = append(errs, errors.New("--node-name is required (the downward API's spec.nodeName)"))
	}
	if o.LeaseDuration < 300*time.Millisecond || o.LeaseDuration%time.Millisecond != 0 {
		errs = append(errs, fmt.Errorf("--lease-duration %s must be a whole number of milliseconds, at least 300ms", o.LeaseDuration))
	}
	if o.RenewInterval <= 0 || o.RenewInterval*2 > o.LeaseDuration {
		errs = append(errs, fmt.Errorf("--renew-interval %s must be positive and at most half of --lease-duration %s, or one slow renewal drops the node's IPs", o.RenewInterval, o.LeaseDuration))
	}
	if o.ControllerLease != "" && (o.HeartbeatInterval <= 0 || o.HeartbeatInterval*3 > o.LeaseDuration) {
		errs = append(errs, fmt.Errorf("--heartbeat-interval %s must be positive and at most a third of --lease-duration %s, so one lost heartbeat does not drop the node's IPs", o.HeartbeatInterval, o.LeaseDuration))
	}
	if o.ControllerLease != "" && o.LeaseRefresh < o.RenewInterval {
		errs = append(errs, fmt.Errorf("--lease-refresh %s must be at least --renew-interval %s", o.LeaseRefresh, o.RenewInterval))
	}
	if o.BPFDir == "" {
		errs = append(errs, errors.New("--bpf-dir is required (a directory on a bpffs mount)"))
	}
	return errors.Join(errs...)
}
