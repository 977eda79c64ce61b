// Command egressgw-controller places floating IPs, fails them over, and writes status.
package main

import (
	"context"
	"flag"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/egressgw/egressgw/controller"
)

func main() {
	opts := controller.NewOptions()
	fs := pflag.NewFlagSet("egressgw-controller", pflag.ExitOnError)
	opts.AddFlags(fs)
	klogFlags := flag.NewFlagSet("klog", flag.ExitOnError)
	klog.InitFlags(klogFlags)
	fs.AddGoFlagSet(klogFlags)
	_ = fs.Parse(os.Args[1:])

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := controller.Run(ctx, opts); err != nil {
		klog.ErrorS(err, "egressgw-controller failed")
		os.Exit(1)
	}
}
