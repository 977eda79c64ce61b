package e2e

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/egressgw/egressgw/test/cluster"
	"github.com/egressgw/egressgw/test/topology"
)

// TestAggregatedAPI: the egress.egressgw.io views, through kubectl as users reach them.
// Discovery lists the resources; `kubectl get podegresses -A` shows each pod's effective
// SNAT; and a preview, created with `kubectl create -f`, names the source address each
// packet leaves with, which the external host then sees on real packets.
func TestAggregatedAPI(t *testing.T) {
	c := need(t)

	t.Run("discovery", func(t *testing.T) {
		// Every resource of the group, with its short name, scope, kind, verbs and
		// category: the views are read-only, the preview can only be created.
		want := []string{
			"egresspolicyviews epv egress.egressgw.io/v1alpha1 false EgressPolicyView get,list egressnat",
			"egresspreviews egress.egressgw.io/v1alpha1 false EgressPreview create",
			"podegresses pe egress.egressgw.io/v1alpha1 true PodEgress get,list,watch egressnat",
		}
		out := kubectl(t, c, "", "api-resources", "--api-group=egress.egressgw.io", "-o", "wide", "--no-headers")
		var got []string
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			got = append(got, strings.Join(strings.Fields(line), " "))
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("kubectl api-resources --api-group=egress.egressgw.io shows\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})

	const ns, name = "e2e-aggregated", "e2e-aggregated"
	kubectl(t, c, namespaceYAML(ns), "apply", "-f", "-")
	apply(t, c, gatewayYAML(name, aggregatedIP)+"---\n"+policyYAML(name, name, ns, "client", externalHost), aggregatedIP)
	p := waitPolicyReady(t, c, name)
	client := addPod(t, c, otherNode(t, c, p.Node).Name, ns, "client", "client")
	other := addPod(t, c, p.Node, ns, "other", "other")

	t.Run("kubectl get podegresses -A shows each pod's SNAT", func(t *testing.T) {
		want := map[string][]string{ // pod → its row, from the POLICY column to DESTINATIONS
			"client": {name, aggregatedIP, p.Node, externalHost.String()},
			"other":  {"<none>", "<none>", "<none>", "<none>"},
		}
		err := eventually(30*time.Second, func() error {
			out, err := c.Kubectl(nil, "get", "podegresses", "-A")
			if err != nil {
				return err
			}
			for pod, cells := range want {
				row := findRow(out, ns, pod)
				if len(row) < 6 || !slices.Equal(row[2:6], cells) {
					return fmt.Errorf("the row of %s/%s is %q, want %q in POLICY to DESTINATIONS:\n%s", ns, pod, row, cells, out)
				}
				node := client.Node
				if pod == "other" {
					node = other.Node
				}
				if rest := strings.Join(row[6:], " "); !strings.HasPrefix(rest, fmt.Sprintf("masquerade to %s (%s)", node.Name, node.IP)) {
					return fmt.Errorf("the row of %s/%s says other traffic %q, want a masquerade to %s (%s)", ns, pod, rest, node.Name, node.IP)
				}
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	})

	t.Run("a preview names the source the external host sees", func(t *testing.T) {
		tests := []struct {
			name        string
			pod         *cluster.Pod
			dst         netip.Addr
			wantVerdict string
			wantSource  netip.Addr
			wantNode    string
		}{
			{"a selected pod to the policy's destination", client, topology.ExternalIP, "SNAT", netip.MustParseAddr(aggregatedIP), p.Node},
			{"a selected pod elsewhere", client, topology.ExternalIP2, "Masquerade", client.Node.IP, client.Node.Name},
			{"a pod no policy selects", other, topology.ExternalIP, "Masquerade", other.Node.IP, other.Node.Name},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				podName := strings.TrimPrefix(tt.pod.Name, ns+"/")
				var got previewResult
				if err := eventually(30*time.Second, func() (err error) {
					if got, err = preview(c, ns, podName, tt.dst, "TCP", topology.ServicePort); err == nil &&
						(got.Status.Verdict != tt.wantVerdict || got.Status.SourceIP != tt.wantSource.String() || got.Status.GatewayNode != tt.wantNode) {
						err = fmt.Errorf("the preview says %s from %q through %q, want %s from %s through %s",
							got.Status.Verdict, got.Status.SourceIP, got.Status.GatewayNode, tt.wantVerdict, tt.wantSource, tt.wantNode)
					}
					return err
				}); err != nil {
					t.Fatal(err)
				}
				// The preview and the dataplane are built from the same decision.
				if err := waitSeenAs(tt.pod, tt.dst, tt.wantSource, 30*time.Second); err != nil {
					t.Errorf("the preview says %s, but: %v", tt.wantSource, err)
				}
			})
		}
	})
}

// findRow returns the fields of the row of `kubectl get -A` for namespace/name.
func findRow(table, namespace, name string) []string {
	for _, line := range strings.Split(table, "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == namespace && f[1] == name {
			return f
		}
	}
	return nil
}
