// Command egressgw-agent programs one node's egress dataplane and holds the floating IPs
// the controller grants the node.
package main

import (
	"context"
	"flag"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/egressgw/egressgw/nodeagent"
)

func main() {
	opts := nodeagent.NewOptions()
	fs := pflag.NewFlagSet("egressgw-agent", pflag.ExitOnError)
	opts.AddFlags(fs)
	klogFlags := flag.NewFlagSet("klog", flag.ExitOnError)
	klog.InitFlags(klogFlags)
	fs.AddGoFlagSet(klogFlags)
	_ = fs.Parse(os.Args[1:])
	// Run and Uninstall validate too; this only keeps exit status 2 for bad flags.
	if err := opts.Validate(); err != nil {
		klog.ErrorS(err, "Bad options")
		os.Exit(2)
	}
	if opts.Uninstall {
		if err := nodeagent.Uninstall(opts); err != nil {
			klog.ErrorS(err, "Uninstall incomplete")
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := nodeagent.Run(ctx, opts); err != nil {
		klog.ErrorS(err, "egressgw-agent failed")
		os.Exit(1)
	}
}
