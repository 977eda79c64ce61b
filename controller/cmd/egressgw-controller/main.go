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
	flag.StringVar(&opts.LeaderElectionNamespace, "leader-election-namespace", "egressgw-system", "namespace of the leader election Lease")
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
	mgr, err := controller.New(cfg, opts)
	if err != nil {
		return err
	}
	return mgr.Start(ctx)
}
