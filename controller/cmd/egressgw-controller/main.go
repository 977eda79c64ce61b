// Command egressgw-controller places floating IPs, fails them over, and writes status.
package main

import (
	"context"
	"flag"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/egressgw/egressgw/controller"
)

func main() {
	opts := controller.Options{}
	flag.BoolVar(&opts.LeaderElection, "leader-elect", true, "take turns with other replicas through a Lease")
	flag.StringVar(&opts.Election.Namespace, "leader-election-namespace", "egressgw-system", "namespace of the leader election Lease")
	flag.DurationVar(&opts.Election.LeaseDuration, "leader-elect-lease-duration", 15*time.Second, "how long a leader election Lease lasts; a replica that crashed is replaced after this")
	flag.DurationVar(&opts.Election.RenewDeadline, "leader-elect-renew-deadline", 10*time.Second, "how long the leader retries renewing before it stops placing")
	flag.DurationVar(&opts.Election.RetryPeriod, "leader-elect-retry-period", 2*time.Second, "how often replicas try to take or renew the leadership")
	flag.DurationVar(&opts.Election.AckHold, "heartbeat-hold", 90*time.Second,
		"how long after its last leadership renewal the leader still answers heartbeats: the longest API server outage traffic rides out; a new leader waits this long before it declares Down a node that never sent it a heartbeat")
	flag.StringVar(&opts.HeartbeatAddr, "heartbeat-bind-address", "", "host:port where the leader answers node agents' UDP heartbeats; empty: agents renew their Leases instead")
	flag.StringVar(&opts.HeartbeatAdvertise, "heartbeat-advertise-address", "", "host:port agents send heartbeats to, if not --heartbeat-bind-address (e.g. $(POD_IP):7471)")
	flag.DurationVar(&opts.Grace, "grace", 500*time.Millisecond, "how long past its heartbeat Lease's duration a node is still Up")
	flag.StringVar(&opts.MetricsAddr, "metrics-bind-address", ":8080", "address of /metrics; 0 disables")
	flag.StringVar(&opts.ProbeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz; 0 disables")
	klog.InitFlags(nil)
	flag.Parse()
	ctrl.SetLogger(klog.NewKlogr())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, opts); err != nil {
		klog.ErrorS(err, "egressgw-controller failed")
		os.Exit(1)
	}
}

func run(ctx context.Context, opts controller.Options) error {
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return err
	}
	mgr, err := controller.NewWhenReachable(ctx, cfg, opts)
	if err != nil {
		return err
	}
	return mgr.Start(ctx)
}
