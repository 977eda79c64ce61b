package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/egressgw/egressgw/test/cluster"
	"github.com/egressgw/egressgw/test/controlplane"
	"github.com/egressgw/egressgw/test/realnodes"
	"github.com/egressgw/egressgw/test/topology"
)

// runReal runs a cluster of real nodes (containerd, kubelet, kube-proxy, the ptp CNI),
// installs the product on it as docs/install.md says, and runs the example's pods as
// Pods of the test client's image; the table is what those pods saw.
func runReal(ctx context.Context, opts demoOptions, start time.Time) (err error) {
	step("building the images (make images) and the node binaries (hack/nodes.sh), unless built")
	base, err := realnodes.ImageTarballs()
	if err != nil {
		return err
	}
	product, err := realnodes.InstallTarballs()
	if err != nil {
		return err
	}
	step("starting etcd, kube-apiserver, kube-scheduler, kube-controller-manager and %d real nodes (containerd, kubelet, kube-proxy in nftables mode, the ptp CNI)", opts.nodes)
	l, err := realnodes.StartLocal(ctx, opts.nodes, append(base, product...), nil)
	if err != nil {
		return err
	}
	defer func() {
		step("stopping and removing everything")
		if cerr := l.Close(); err == nil {
			err = cerr
		}
	}()
	kubectl := l.CP.Kubectl
	step("installing as docs/install.md says: kubectl apply -k of an overlay of artifacts/, then every rollout status")
	dir, err := os.MkdirTemp("", "egressgw-overlay-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := realnodes.WriteOverlay(dir, controlplane.ServiceCIDR, topology.PodSupernet.String()); err != nil {
		return err
	}
	if err := realnodes.Install(ctx, l.CP, dir, nil); err != nil {
		return err
	}
	step("applying the spec's example: NetworkGatewayGroup kube-system/default and EgressNATPolicy egress")
	if err := applyExample(ctx, l, kubectl); err != nil {
		return err
	}
	step("creating the example's pods, of the test client's image, each on a chosen node")
	var rows []row
	for i, p := range demoPods {
		node := l.Nodes[i%len(l.Nodes)]
		if _, err := kubectl([]byte(demoPod(p.ns, p.name, p.role, node.Name)), "apply", "-f", "-"); err != nil {
			return err
		}
		rows = append(rows, row{pod: p.ns + "/" + p.name, node: fmt.Sprintf("%s (%s)", node.Name, node.IP), what: p.what})
	}
	for i, p := range demoPods {
		ip, err := waitRunning(ctx, kubectl, p.ns, p.name, 2*time.Minute)
		if err != nil {
			return err
		}
		rows[i].podIP = ip.String()
	}
	step("asking the external host, from inside every pod (kubectl exec), which source it saw, over TCP")
	for i, p := range demoPods {
		for j, dst := range destinations {
			rows[i].seen[j] = seenByExec(ctx, kubectl, p.ns, p.name, dst)
		}
	}
	printTable(rows)
	if err := printViews(kubectl); err != nil {
		return err
	}
	rss, by, err := l.RSS()
	if err != nil {
		return err
	}
	fmt.Printf("\nUp in %s. Memory of the cluster (RSS of the control plane, the nodes' components and the pods): %d MB (%s).\n",
		time.Since(start).Round(100*time.Millisecond), rss>>20, by)
	var logs []string
	for _, n := range l.Nodes {
		logs = append(logs, n.Logs()...)
	}
	fmt.Printf(`
Try:
  export KUBECONFIG=%s PATH=%s:$PATH
  kubectl get nodes -o wide
  kubectl get pods -A -o wide
  kubectl get egressnat -A
  kubectl describe egressnatpolicy egress
  kubectl get networkgatewaynodes -n kube-system -o wide
  kubectl get podegresses -A
  kubectl -n alice exec frontend -- %s who %s:%d
  kubectl -n egressgw-system logs daemonset/egressgw-agent
  nsenter --net=/run/netns/%s nft list table ip egressgw
The nodes' logs (containerd, kubelet, kube-proxy): %s
`, l.CP.Kubeconfig, l.CP.Assets, realnodes.TestClientEntrypoint, topology.ExternalIP, topology.ServicePort, l.Nodes[0].NS, strings.Join(logs, " "))
	return wait(ctx, opts)
}

// applyExample labels the example's namespaces, waits until every node's agent has
// reported (placement is sticky: the IPs spread as on a running cluster), and applies the
// example's gateway and policy, waiting until the policy is Ready.
func applyExample(ctx context.Context, l *realnodes.Local, kubectl kubectlFunc) error {
	for _, ns := range []string{"alice", "paul", "bob"} {
		if _, err := kubectl([]byte(fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata: {name: %s, labels: {user: %s}}\n", ns, ns)), "apply", "-f", "-"); err != nil {
			return err
		}
	}
	if err := poll(ctx, time.Minute, func() (bool, string) {
		out, err := kubectl(nil, "get", "networkgatewaynodes", "-n", "kube-system", "-o", "jsonpath={range .items[?(@.status.interfaces)]}{.metadata.name} {end}")
		return err == nil && len(strings.Fields(out)) == len(l.Nodes), fmt.Sprintf("nodes reported: %q %v", out, err)
	}); err != nil {
		return err
	}
	if _, err := kubectl([]byte(cluster.ExampleGateway()+"---\n"+cluster.ExamplePolicy()), "apply", "-f", "-"); err != nil {
		return err
	}
	return poll(ctx, time.Minute, func() (bool, string) {
		out, err := kubectl(nil, "get", "egressnatpolicy", "egress", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		return err == nil && out == "True", fmt.Sprintf("EgressNATPolicy egress Ready: %q %v", out, err)
	})
}

// demoPod is a Pod of the test client's image that serves (to stay Running), placed on
// node by the scheduler.
func demoPod(ns, name, role, node string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {namespace: %s, name: %s, labels: {role: %s}}
spec:
  nodeSelector: {kubernetes.io/hostname: %s}
  terminationGracePeriodSeconds: 1
  containers:
  - {name: client, image: %s, imagePullPolicy: Never, args: [serve]}
`, ns, name, role, node, realnodes.TestClientImage)
}

// waitRunning waits until pod ns/name is Running, and returns its IP.
func waitRunning(ctx context.Context, kubectl kubectlFunc, ns, name string, timeout time.Duration) (netip.Addr, error) {
	var ip netip.Addr
	err := poll(ctx, timeout, func() (bool, string) {
		out, err := kubectl(nil, "-n", ns, "get", "pod", name, "-o", "json")
		if err != nil {
			return false, err.Error()
		}
		var pod struct {
			Status struct{ Phase, PodIP string } `json:"status"`
		}
		if err := json.Unmarshal([]byte(out), &pod); err != nil {
			return false, err.Error()
		}
		ip, _ = netip.ParseAddr(pod.Status.PodIP)
		return pod.Status.Phase == "Running" && ip.IsValid(), fmt.Sprintf("pod %s/%s: %s", ns, name, pod.Status.Phase)
	})
	return ip, err
}

// seenByExec asks the external host at dst, from inside pod ns/name, which source it saw.
func seenByExec(ctx context.Context, kubectl kubectlFunc, ns, name, dst string) string {
	for range 5 {
		out, err := kubectl(nil, "-n", ns, "exec", name, "--", realnodes.TestClientEntrypoint, "who", fmt.Sprintf("%s:%d", dst, topology.ServicePort))
		if seen, perr := netip.ParseAddrPort(strings.TrimSpace(out)); err == nil && perr == nil {
			return seen.Addr().String()
		}
		select {
		case <-ctx.Done():
			return "(stopped)"
		case <-time.After(500 * time.Millisecond):
		}
	}
	return "(no answer)"
}

// poll calls done every 250 ms until it says so or timeout passes; the error then says
// what done last reported.
func poll(ctx context.Context, timeout time.Duration, done func() (bool, string)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, last := done()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s: %s", timeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}
