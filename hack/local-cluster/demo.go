package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/egressgw/egressgw/test/cluster"
	"github.com/egressgw/egressgw/test/topology"
)

// demo is the spec's example on the local cluster: who runs where.
type demo struct {
	pods []demoPod
}

type demoPod struct {
	pod  *cluster.Pod
	what string
}

// setupDemo applies the example and puts pods on the nodes: alice's and paul's frontends
// (selected), alice's backend and bob's frontend (not selected).
func setupDemo(ctx context.Context, c *cluster.Cluster) (*demo, error) {
	if err := c.ApplyExample(ctx); err != nil {
		return nil, err
	}
	d := &demo{}
	nodes := c.Topo.Nodes
	for i, p := range []struct {
		ns, name, role, what string
	}{
		{"alice", "frontend", "frontend", "selected"},
		{"paul", "frontend", "frontend", "selected"},
		{"alice", "backend", "backend", "not selected: no role=frontend"},
		{"bob", "frontend", "frontend", "not selected: namespace bob"},
	} {
		node := nodes[i%len(nodes)]
		pod, err := c.AddPod(ctx, node.Name, p.ns, p.name, map[string]string{"role": p.role})
		if err != nil {
			return nil, err
		}
		d.pods = append(d.pods, demoPod{pod: pod, what: p.what})
	}
	return d, nil
}

// show prints what the external host saw from each pod, and the API's view.
func (d *demo) show(ctx context.Context, c *cluster.Cluster) error {
	step("sending TCP from every pod to %s (the policy's destination) and %s (another)", topology.ExternalIP, topology.ExternalIP2)
	// The agents program new pods within a second; give them a few.
	time.Sleep(2 * time.Second)
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "POD\tNODE\tPOD IP\tSEEN AT %s AS\tSEEN AT %s AS\t\n", topology.ExternalIP, topology.ExternalIP2)
	for _, p := range d.pods {
		fmt.Fprintf(w, "%s\t%s (%s)\t%s\t%s\t%s\t%s\n", p.pod.Name, p.pod.Node.Name, p.pod.Node.IP, p.pod.IP,
			seen(ctx, p.pod, topology.ExternalIP), seen(ctx, p.pod, topology.ExternalIP2), p.what)
	}
	w.Flush()
	for _, args := range [][]string{
		{"get", "networkgatewaygroups", "-A"},
		{"get", "networkgatewaygroup", "default", "-n", "kube-system", "-o", "jsonpath={.status}"},
		{"get", "egressnatpolicies"},
		{"get", "podegresses", "-A"},
	} {
		out, err := c.Kubectl(nil, args...)
		if err != nil {
			return err
		}
		fmt.Printf("\n$ kubectl %s\n%s\n", strings.Join(args, " "), strings.TrimRight(out, "\n"))
	}
	out, err := c.Kubectl([]byte(previewPaul), "create", "-f", "-", "-o", "jsonpath={range .status.steps[*]}{.stage}\t{.action}\t{.node}\t{.message}{\"\\n\"}{end}")
	if err != nil {
		return err
	}
	fmt.Printf("\n$ kubectl create -f preview.yaml   # paul/frontend to %s, TCP 443\n%s\n", topology.ExternalIP, strings.TrimRight(out, "\n"))
	return nil
}

// previewPaul asks the aggregated API for the path of one packet, without sending it.
var previewPaul = fmt.Sprintf(`apiVersion: egress.egressgw.io/v1alpha1
kind: EgressPreview
spec:
  source: {namespace: paul, name: frontend}
  destination: %q
  protocol: TCP
  port: 443
`, topology.ExternalIP)

func seen(ctx context.Context, p *cluster.Pod, dst netip.Addr) string {
	for range 5 {
		src, err := p.WhoTCP(ctx, dst)
		if err == nil {
			return src.Addr().String()
		}
		time.Sleep(500 * time.Millisecond)
	}
	return "(no answer)"
}

func printTry(c *cluster.Cluster) {
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
}
