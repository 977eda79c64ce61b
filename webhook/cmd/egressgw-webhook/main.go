// Command egressgw-webhook serves admission and CRD conversion for networking.gke.io.
package main

import (
	"context"
	"flag"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/egressgw/egressgw/webhook"
)

func main() {
	opts := webhook.NewOptions()
	fs := pflag.NewFlagSet("egressgw-webhook", pflag.ExitOnError)
	opts.AddFlags(fs)
	klogFlags := flag.NewFlagSet("klog", flag.ExitOnError)
	klog.InitFlags(klogFlags)
	fs.AddGoFlagSet(klogFlags)
	_ = fs.Parse(os.Args[1:])
	ctrl.SetLogger(klog.NewKlogr())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := webhook.Run(ctx, opts); err != nil {
		klog.ErrorS(err, "egressgw-webhook failed")
		os.Exit(1)
	}
}
