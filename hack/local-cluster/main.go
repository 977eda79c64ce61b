// Command local-cluster runs the system on this machine: today a real etcd and
// kube-apiserver with the networking.gke.io API and the admission and conversion webhook
// server, and the spec's example applied. It prints a KUBECONFIG to use with kubectl and runs until Ctrl-C.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/egressgw/egressgw/test/controlplane"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "local-cluster:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) (err error) {
	fmt.Println("starting etcd, kube-apiserver and the webhook server ...")
	cp, err := controlplane.Start()
	if err != nil {
		return err
	}
	defer func() {
		fmt.Println("stopping ...")
		if stopErr := cp.Stop(); err == nil {
			err = stopErr
		}
	}()

	spec := filepath.Join(controlplane.RepoRoot(), "test", "testdata", "spec")
	out, err := cp.Kubectl(nil, "apply",
		"-f", filepath.Join(spec, "v1-networkgatewaygroup-status.yaml"),
		"-f", filepath.Join(spec, "v1-egressnatpolicy.yaml"))
	if err != nil {
		return err
	}
	fmt.Print(out)
	for _, args := range [][]string{
		{"get", "egressnat", "-A"},
		{"get", "egressnatpolicies.v1alpha1.networking.gke.io", "egress", "-o", "yaml"},
	} {
		out, err := cp.Kubectl(nil, args...)
		if err != nil {
			return err
		}
		fmt.Printf("\n$ kubectl %s\n%s", join(args), out)
	}
	fmt.Printf(`
The API is up. Try:

  export KUBECONFIG=%s
  export PATH=%s:$PATH
  kubectl api-resources --api-group=networking.gke.io
  kubectl explain egressnatpolicies.spec.sources
  kubectl get networkgatewaygroups -A

Press Ctrl-C to stop; everything is removed on exit.
`, cp.Kubeconfig, cp.Assets)
	<-ctx.Done()
	return nil
}

func join(args []string) string { return strings.Join(args, " ") }
