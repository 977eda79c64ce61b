package integration

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/egressgw/egressgw/test/controlplane"
)

// TestAdmission drives the validating webhook through kube-apiserver with kubectl: the
// server runs with its own certificates, and kube-apiserver verifies them.
func TestAdmission(t *testing.T) {
	cp := controlplane.StartForTest(t)
	multi := filepath.Join(controlplane.RepoRoot(), "test", "testdata", "multi-gateway.yaml")
	out := mustKubectl(t, cp, nil, "apply", "-f", multi)
	if strings.Count(out, "created") != 6 {
		t.Fatalf("the spec's multi-gateway example was not fully created:\n%s", out)
	}
	mustKubectl(t, cp, []byte(`apiVersion: v1
kind: Node
metadata: {name: worker1}
spec: {podCIDR: 10.244.1.0/24, podCIDRs: [10.244.1.0/24]}
status:
  addresses: [{type: InternalIP, address: 192.168.1.11}]
`), "create", "-f", "-")
	mustKubectl(t, cp, []byte(`{"status":{"addresses":[{"type":"InternalIP","address":"192.168.1.11"}]}}`),
		"patch", "node", "worker1", "--subresource=status", "--type=merge", "--patch-file=/dev/stdin")
	// worker3 has no Node object yet, only its agent's report, on a subnet of its own.
	mustKubectl(t, cp, []byte("apiVersion: networking.gke.io/v1\nkind: NetworkGatewayNode\nmetadata: {name: worker3, namespace: kube-system}\n"), "create", "-f", "-")
	mustKubectl(t, cp, []byte(`{"status":{"interfaces":[{"name":"eth0","subnets":["192.168.2.13/24"]}]}}`),
		"patch", "networkgatewaynode", "worker3", "-n", "kube-system", "--subresource=status", "--type=merge", "--patch-file=/dev/stdin")
	mustKubectl(t, cp, []byte("apiVersion: networking.gke.io/v1alpha1\nkind: AnthosNetworkGateway\nmetadata: {name: legacy, namespace: kube-system}\nspec:\n  floatingIPs: [192.168.1.110]\n"), "apply", "-f", "-")
	mustKubectl(t, cp, []byte(legacyPolicy("old", "192.168.1.101")), "apply", "-f", "-") // gateway2's IP, through the legacy API

	gateway := func(name string, ips ...string) string {
		return "apiVersion: networking.gke.io/v1\nkind: NetworkGatewayGroup\nmetadata: {name: " + name + ", namespace: kube-system}\nspec:\n  floatingIPs: [" + strings.Join(ips, ", ") + "]\n"
	}
	policy := func(name, gateway, cidr string) string {
		return "apiVersion: networking.gke.io/v1\nkind: EgressNATPolicy\nmetadata: {name: " + name + "}\nspec:\n" +
			"  sources: [{namespaceSelector: {matchLabels: {user: alice}}, podSelector: {matchLabels: {role: frontend}}}]\n" +
			"  action: SNAT\n  destinations: [{cidr: '" + cidr + "'}]\n  gatewayRef: {name: " + gateway + ", namespace: kube-system}\n"
	}
	tests := []struct {
		name         string
		manifest     string
		args         []string // kubectl arguments; default apply -f -
		wantErr      []string
		wantWarnings []string
	}{{
		name:     "a floating IP another gateway uses",
		manifest: gateway("gateway4", "192.168.1.103", "192.168.1.101"),
		wantErr:  []string{`spec.floatingIPs[1]: Duplicate value: "192.168.1.101": already used by NetworkGatewayGroup kube-system/gateway2`},
	}, {
		name:     "a floating IP a legacy gateway uses",
		manifest: gateway("gateway4", "192.168.1.110"),
		wantErr:  []string{`spec.floatingIPs[0]: Duplicate value: "192.168.1.110": already used by AnthosNetworkGateway kube-system/legacy`},
	}, {
		name:     "a node's address as a floating IP",
		manifest: gateway("gateway4", "192.168.1.11"),
		wantErr:  []string{`spec.floatingIPs[0]: Invalid value: "192.168.1.11": is the address of node worker1`},
	}, {
		name:     "a node's address that only its agent reports",
		manifest: gateway("gateway4", "192.168.2.13"),
		wantErr:  []string{`spec.floatingIPs[0]: Invalid value: "192.168.2.13": is the address of node worker3`},
	}, {
		name:     "a floating IP in a Node's pod CIDR",
		manifest: gateway("gateway4", "10.244.1.5"),
		wantErr:  []string{`spec.floatingIPs[0]: Invalid value: "10.244.1.5": is in the cluster's pod CIDR 10.244.1.0/24 (Node worker1's spec.podCIDRs); a floating IP must be an unused address in the nodes' subnet, outside the pod and service CIDRs`},
	}, {
		name:     "a floating IP in the service CIDR",
		manifest: gateway("gateway4", "10.0.0.10"),
		wantErr:  []string{`spec.floatingIPs[0]: Invalid value: "10.0.0.10": is in the cluster's service CIDR 10.0.0.0/24 (--service-cidrs, SERVICE_CIDRS in ConfigMap egressgw-config)`},
	}, {
		name:     "the default route as a destination",
		manifest: policy("everything", "gateway1", "0.0.0.0/0"),
		wantErr:  []string{`spec.destinations[0].cidr: Invalid value: "0.0.0.0/0": is the default route: it selects all of the pods' traffic, to the cluster's own pods, services and nodes included; list the outside ranges you mean, or set spec.allowClusterOverlap: true`},
	}, {
		name:     "the default route, opted in",
		manifest: policy("everything", "gateway2", "0.0.0.0/0") + "  allowClusterOverlap: true\n",
	}, {
		name:     "a destination that covers a Node's pod CIDR",
		manifest: policy("pods", "gateway1", "10.244.0.0/16"),
		wantErr:  []string{`spec.destinations[0].cidr: Invalid value: "10.244.0.0/16": covers the cluster's pod CIDR 10.244.1.0/24 (Node worker1's spec.podCIDRs)`, `set spec.allowClusterOverlap: true`},
	}, {
		name:     "a destination inside a reported node subnet",
		manifest: policy("nodes", "gateway1", "192.168.2.0/28"),
		wantErr:  []string{`spec.destinations[0].cidr: Invalid value: "192.168.2.0/28": is inside the cluster's node subnet 192.168.2.0/24 (node worker3's report)`},
	}, {
		name:         "a floating IP no node subnet contains is accepted with a warning",
		manifest:     gateway("gateway5", "192.168.1.120"),
		wantWarnings: []string{`Warning: spec.floatingIPs[0]: no node has a subnet that contains 192.168.1.120`},
	}, {
		name:     "a gatewayRef that names nothing",
		manifest: policy("bad", "nope", "8.8.8.0/24"),
		wantErr:  []string{`spec.gatewayRef: Not found: "kube-system/nope": no NetworkGatewayGroup kube-system/nope exists; create it first, or fix gatewayRef`},
	}, {
		name:     "a gatewayRef naming a gateway without floating IPs",
		manifest: gateway("empty") + "---\n" + policy("bad", "empty", "8.8.8.0/24"),
		wantErr:  []string{`NetworkGatewayGroup kube-system/empty has no floating IPs`},
	}, {
		name:     "an IPv6 destination",
		manifest: policy("bad", "gateway1", "2001:db8::/32"),
		wantErr:  []string{`spec.destinations[0].cidr`, `IPv4-only`},
	}, {
		name:         "a destination with host bits set is accepted with a warning",
		manifest:     policy("hostbits", "gateway1", "8.8.8.8/24"),
		wantWarnings: []string{`Warning: spec.destinations[0].cidr: 8.8.8.8/24 has host bits set; it selects 8.8.8.0/24`},
	}, {
		name:     "a legacy egressSourceIP that is no gateway's floating IP",
		manifest: legacyPolicy("bad", "192.168.1.200"),
		wantErr:  []string{`spec.egressSourceIP: Invalid value: "192.168.1.200": is not a floating IP of any AnthosNetworkGateway or NetworkGatewayGroup`},
	}, {
		name:     "a legacy egressSourceIP another policy uses",
		manifest: legacyPolicy("bad", "192.168.1.101"),
		wantErr:  []string{`spec.egressSourceIP: Duplicate value: "192.168.1.101": already used by EgressNATPolicy old`},
	}, {
		name: "an invalid label selector",
		manifest: "apiVersion: networking.gke.io/v1\nkind: EgressNATPolicy\nmetadata: {name: bad}\nspec:\n" +
			"  sources: [{podSelector: {matchExpressions: [{key: role, operator: Like, values: [x]}]}}]\n" +
			"  action: SNAT\n  destinations: [{cidr: 8.8.8.0/24}]\n  gatewayRef: {name: gateway1, namespace: kube-system}\n",
		wantErr: []string{`spec.sources[0].podSelector.matchExpressions[0].operator: Invalid value: "Like"`},
	}, {
		name:         "changing a gateway's first IP names the policies that use it",
		manifest:     gateway("gateway1", "192.168.1.130", "192.168.1.100"),
		wantWarnings: []string{`Warning: EgressNATPolicies egress1, hostbits use the first floating IP of NetworkGatewayGroup kube-system/gateway1 as egress IP; it changes from 192.168.1.100 to 192.168.1.130`},
	}, {
		name:         "deleting a gateway that policies use names them",
		args:         []string{"delete", "networkgatewaygroup", "gateway3", "-n", "kube-system"},
		wantWarnings: []string{`Warning: EgressNATPolicy egress3 refers to NetworkGatewayGroup kube-system/gateway3`},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			var stdin []byte
			if args == nil {
				args, stdin = []string{"apply", "-f", "-"}, []byte(tt.manifest)
			}
			stdout, stderr, err := cp.KubectlOutputs(stdin, args...)
			if len(tt.wantErr) == 0 && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if len(tt.wantErr) > 0 && err == nil {
				t.Fatalf("accepted, want refused:\n%s", stdout)
			}
			for _, w := range append(tt.wantErr, tt.wantWarnings...) {
				if !strings.Contains(stderr, w) {
					t.Errorf("kubectl does not say %q:\n%s", w, stderr)
				}
			}
		})
	}
	t.Run("kubectl explain documents the opt-in", func(t *testing.T) {
		out := mustKubectl(t, cp, nil, "explain", "egressnatpolicies.spec.allowClusterOverlap", "--api-version=networking.gke.io/v1")
		// kubectl wraps the description; compare it with its whitespace folded.
		if !strings.Contains(strings.Join(strings.Fields(out), " "), "lets destinations cover the cluster's own addresses: 0.0.0.0/0") {
			t.Errorf("kubectl explain does not document allowClusterOverlap:\n%s", out)
		}
	})
}

// TestWebhookDown checks that with the webhook server gone, writes to our resources fail
// closed with a message that names the webhook, and other resources are unaffected.
func TestWebhookDown(t *testing.T) {
	cp := controlplane.StartForTest(t)
	if err := cp.StopWebhook(); err != nil {
		t.Fatal(err)
	}
	_, err := cp.Kubectl([]byte("apiVersion: networking.gke.io/v1\nkind: NetworkGatewayGroup\nmetadata: {name: gw, namespace: kube-system}\nspec:\n  floatingIPs: [192.168.1.100]\n"), "apply", "-f", "-")
	var kerr *controlplane.KubectlError
	if !errors.As(err, &kerr) {
		t.Fatalf("a gateway was written with the webhook down: %v", err)
	}
	for _, w := range []string{`failed calling webhook "v1.networkgatewaygroups.validate.egressgw.io"`, "connection refused"} {
		if !strings.Contains(kerr.Stderr, w) {
			t.Errorf("the refusal does not say %q:\n%s", w, kerr.Stderr)
		}
	}
	mustKubectl(t, cp, nil, "create", "configmap", "unaffected", "-n", "default", "--from-literal=a=b")
}

func legacyPolicy(name, ip string) string {
	return "apiVersion: networking.gke.io/v1alpha1\nkind: EgressNATPolicy\nmetadata: {name: " + name + "}\nspec:\n" +
		"  egress: [{podSelector: {matchLabels: {role: frontend}}}]\n  destinationCIDRs: [8.8.8.0/24]\n  egressSourceIP: " + ip + "\n"
}

// TestGatewayAndPolicyAppliedTogether: `kubectl apply` of a gateway and a policy that
// names it, in one stream, is accepted every time: admission asks the API server before it
// says a gateway does not exist, so it never races its own cache.
func TestGatewayAndPolicyAppliedTogether(t *testing.T) {
	cp := controlplane.StartForTest(t)
	for i := range 20 {
		manifest := fmt.Sprintf(`apiVersion: networking.gke.io/v1
kind: NetworkGatewayGroup
metadata: {name: together-%[1]d, namespace: kube-system}
spec: {floatingIPs: [198.51.100.%[2]d]}
---
apiVersion: networking.gke.io/v1
kind: EgressNATPolicy
metadata: {name: together-%[1]d}
spec:
  sources: [{podSelector: {matchLabels: {app: a%[1]d}}}]
  action: SNAT
  destinations: [{cidr: 203.0.113.0/24}]
  gatewayRef: {name: together-%[1]d, namespace: kube-system}
`, i, 100+i)
		if _, err := cp.Kubectl([]byte(manifest), "apply", "-f", "-"); err != nil {
			t.Fatalf("apply %d: %v", i, err)
		}
	}
}
