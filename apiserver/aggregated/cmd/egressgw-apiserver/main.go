// Command egressgw-apiserver serves the egress.egressgw.io aggregated API: which IP each
// pod's traffic leaves with, and the path of any packet, computed from the cluster's state.
package main

import (
	"context"
	"flag"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/egressgw/egressgw/apiserver/aggregated/server"
)

func main() {
	opts := server.NewOptions()
	fs := pflag.NewFlagSet("egressgw-apiserver", pflag.ExitOnError)
	opts.AddFlags(fs)
	klogFlags := flag.NewFlagSet("klog", flag.ExitOnError)
	klog.InitFlags(klogFlags)
	fs.AddGoFlagSet(klogFlags)
	_ = fs.Parse(os.Args[1:])

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := server.Run(ctx, opts); err != nil {
		klog.ErrorS(err, "egressgw-apiserver failed")
		os.Exit(1)
	}
}
