// Command local-cluster runs the whole system on this machine: a router, an external host
// and nodes in network namespaces; a real etcd and kube-apiserver. By default the nodes
// are real (containerd, kubelet, kube-proxy, a CNI), with kube-scheduler and
// kube-controller-manager, and the product is installed on them as docs/install.md says,
// from images built here; -harness runs the test harness's nodes instead (no kubelet:
// the components run as processes). It applies the spec's example, shows what the
// external host saw from each pod, prints a KUBECONFIG for kubectl, and runs until Ctrl-C
// (or `make demo-down`), then removes everything.
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
)

func main() {
	opts := demoOptions{}
	flag.IntVar(&opts.nodes, "nodes", 3, "how many nodes the local cluster has")
	flag.BoolVar(&opts.harness, "harness", false, "run the test harness's nodes (no kubelet, no images) instead of real nodes")
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
	harness bool
	exit    bool
	pidFile string
}

func run(ctx context.Context, opts demoOptions) error {
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
	if opts.harness {
		return runHarness(ctx, opts, start)
	}
	return runReal(ctx, opts, start)
}

// wait runs until Ctrl-C, unless told to exit once the result is shown.
func wait(ctx context.Context, opts demoOptions) error {
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
