// Command local-cluster runs the whole system on this machine: nodes, pods, a router and
// an external host in network namespaces; a real etcd and kube-apiserver; the webhook,
// the controller and a node agent per node; and the spec's example applied. It shows what
// the external host saw from each pod, prints a KUBECONFIG for kubectl, and runs until
// Ctrl-C (or `make demo-down`), then removes everything.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/egressgw/egressgw/test/cluster"
)

func main() {
	opts := demoOptions{}
	flag.IntVar(&opts.nodes, "nodes", 3, "how many nodes the local cluster has")
	flag.BoolVar(&opts.exit, "exit", false, "stop after showing the result, instead of running until Ctrl-C")
	flag.StringVar(&opts.pidFile, "pid-file", "", "write the process id here, for make demo-down")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, opts); err != nil {
		fmt.Fprintln(os.Stderr, "local-cluster:", err)
		os.Exit(1)
	}
}

type demoOptions struct {
	nodes   int
	exit    bool
	pidFile string
}

func run(ctx context.Context, opts demoOptions) (err error) {
	start := time.Now()
	if opts.pidFile != "" {
		if err := os.MkdirAll(filepath.Dir(opts.pidFile), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(opts.pidFile, []byte(fmt.Sprint(os.Getpid())), 0o644); err != nil {
			return err
		}
		defer os.Remove(opts.pidFile)
	}
	step("building, and starting etcd, kube-apiserver, the webhook, the controller and %d node agents", opts.nodes)
	c, err := cluster.Start(ctx, cluster.Options{Nodes: opts.nodes, Logs: ""})
	if err != nil {
		return err
	}
	defer func() {
		step("stopping and removing everything")
		if cerr := c.Close(); err == nil {
			err = cerr
		}
	}()
	step("applying the spec's example: NetworkGatewayGroup kube-system/default and EgressNATPolicy egress")
	demo, err := setupDemo(ctx, c)
	if err != nil {
		return err
	}
	if err := demo.show(ctx, c); err != nil {
		return err
	}
	fmt.Printf("\nUp in %s. Component logs: %s\n", time.Since(start).Round(100*time.Millisecond), c.Logs)
	printTry(c)
	if opts.exit {
		return nil
	}
	fmt.Println("\nRunning until Ctrl-C (or make demo-down); everything is removed on exit.")
	<-ctx.Done()
	return nil
}

func step(format string, args ...any) {
	fmt.Printf("==> "+format+"\n", args...)
}
