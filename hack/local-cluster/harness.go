package main

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/egressgw/egressgw/test/cluster"
)

// runHarness runs the harness's cluster: no kubelet, the harness makes each pod's
// namespace and registers the Node and Pod objects; the components run as processes.
func runHarness(ctx context.Context, opts demoOptions, start time.Time) (err error) {
	step("building, and starting etcd, kube-apiserver, the webhook, the controller and %d node agents (the harness: no kubelet)", opts.nodes)
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
	if err := c.ApplyExample(ctx); err != nil {
		return err
	}
	var pods []*cluster.Pod
	for i, p := range demoPods {
		node := c.Topo.Nodes[i%len(c.Topo.Nodes)]
		pod, err := c.AddPod(ctx, node.Name, p.ns, p.name, map[string]string{"role": p.role})
		if err != nil {
			return err
		}
		pods = append(pods, pod)
	}
	step("sending TCP from every pod to %s (the policy's destination) and %s (another)", destinations[0], destinations[1])
	// The agents program new pods within a second; give them a few.
	time.Sleep(2 * time.Second)
	var rows []row
	for i, p := range pods {
		r := row{pod: p.Name, node: fmt.Sprintf("%s (%s)", p.Node.Name, p.Node.IP), podIP: p.IP.String(), what: demoPods[i].what}
		for j, dst := range destinations {
			r.seen[j] = seenFrom(ctx, p, netip.MustParseAddr(dst))
		}
		rows = append(rows, r)
	}
	printTable(rows)
	if err := printViews(c.Kubectl); err != nil {
		return err
	}
	fmt.Printf("\nUp in %s. Component logs: %s\n", time.Since(start).Round(100*time.Millisecond), c.Logs)
	fmt.Printf(`
Try:
  export KUBECONFIG=%s PATH=%s:$PATH
  kubectl get egressnat -A
  kubectl describe egressnatpolicy egress
  kubectl get networkgatewaynodes -n kube-system -o wide
  kubectl get podegresses -A
  kubectl api-resources --api-group=egress.egressgw.io
  ip netns exec %s-node1 nft list table ip egressgw
`, c.CP.Kubeconfig, c.CP.Assets, c.Topo.ID)
	return wait(ctx, opts)
}

func seenFrom(ctx context.Context, p *cluster.Pod, dst netip.Addr) string {
	for range 5 {
		src, err := p.WhoTCP(ctx, dst)
		if err == nil {
			return src.Addr().String()
		}
		time.Sleep(500 * time.Millisecond)
	}
	return "(no answer)"
}
