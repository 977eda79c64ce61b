package main

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/egressgw/egressgw/test/topology"
)

// demoPods are the spec example's pods: alice's and paul's frontends (selected), alice's
// backend and bob's frontend (not selected). Pod i runs on node i modulo the nodes.
var demoPods = []struct {
	ns, name, role, what string
}{
	{"alice", "frontend", "frontend", "selected"},
	{"paul", "frontend", "frontend", "selected"},
	{"alice", "backend", "backend", "not selected: no role=frontend"},
	{"bob", "frontend", "frontend", "not selected: namespace bob"},
}

// row is what the external host saw from one pod, at its two addresses.
type row struct {
	pod, node, podIP, what string
	seen                   [2]string
}

// destinations are where every pod asks who it is: the policy's destination and another.
var destinations = [2]string{topology.ExternalIP.String(), topology.ExternalIP2.String()}

func printTable(rows []row) {
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "POD\tNODE\tPOD IP\tSEEN AT %s AS\tSEEN AT %s AS\t\n", destinations[0], destinations[1])
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", r.pod, r.node, r.podIP, r.seen[0], r.seen[1], r.what)
	}
	w.Flush()
}

// kubectlFunc runs kubectl against the local cluster, with stdin if not nil.
type kubectlFunc func(stdin []byte, args ...string) (string, error)

// printViews prints the API's view: the gateway, its status, the policy, every pod's
// egress, and the preview of paul's frontend's packet to the policy's destination.
func printViews(kubectl kubectlFunc) error {
	for _, args := range [][]string{
		{"get", "networkgatewaygroups", "-A"},
		{"get", "networkgatewaygroup", "default", "-n", "kube-system", "-o", "jsonpath={.status}"},
		{"get", "egressnatpolicies"},
		{"get", "podegresses", "-A"},
	} {
		out, err := kubectl(nil, args...)
		if err != nil {
			return err
		}
		fmt.Printf("\n$ kubectl %s\n%s\n", strings.Join(args, " "), strings.TrimRight(out, "\n"))
	}
	out, err := kubectl([]byte(previewPaul), "create", "-f", "-", "-o", "jsonpath={range .status.steps[*]}{.stage}\t{.action}\t{.node}\t{.message}{\"\\n\"}{end}")
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
