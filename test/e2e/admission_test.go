package e2e

import (
	"strings"
	"testing"

	"github.com/egressgw/egressgw/test/topology"
)

// TestAdmission: what a user sees from kubectl when the cluster refuses an object. Each
// refusal names the field, the bad value and what it conflicts with (the texts are those
// test/integration checks against the webhook alone), and nothing is written. A valid
// policy against the same gateway is accepted, so the refusals are about the fields.
func TestAdmission(t *testing.T) {
	c := need(t)
	existing, other := admissionIPs[0], admissionIPs[1]
	apply(t, c, gatewayYAML("e2e-admission", existing), existing)

	tests := []struct {
		name     string
		manifest string
		resource string // what kubectl get must not find afterwards
		wantErr  []string
	}{{
		name:     "a floating IP another gateway uses",
		manifest: gatewayYAML("e2e-admission-dup", other, existing),
		resource: "networkgatewaygroup/e2e-admission-dup",
		wantErr:  []string{`spec.floatingIPs[1]: Duplicate value: "` + existing + `": already used by NetworkGatewayGroup kube-system/e2e-admission`},
	}, {
		// Every node routes through the segment's router; its agent reports it.
		name:     "the segment's router",
		manifest: gatewayYAML("e2e-admission-router", topology.RouterIP.String()),
		resource: "networkgatewaygroup/e2e-admission-router",
		wantErr: []string{`spec.floatingIPs[0]: Invalid value: "` + topology.RouterIP.String() + `": is a router on the segment (node `,
			`status.interfaces[].routers`},
	}, {
		name:     "a gatewayRef that names no gateway",
		manifest: policyYAML("e2e-admission-bad", "e2e-admission-missing", "e2e-admission", "client", externalHost),
		resource: "egressnatpolicy/e2e-admission-bad",
		wantErr: []string{`spec.gatewayRef: Not found: "kube-system/e2e-admission-missing": ` +
			`no NetworkGatewayGroup kube-system/e2e-admission-missing exists; create it first, or fix gatewayRef`},
	}, {
		name: "an IPv6 destination",
		manifest: strings.Replace(policyYAML("e2e-admission-bad", "e2e-admission", "e2e-admission", "client", externalHost),
			"cidr: "+externalHost.String(), "cidr: 2001:db8::/32", 1),
		resource: "egressnatpolicy/e2e-admission-bad",
		wantErr:  []string{`spec.destinations[0].cidr`, `IPv4-only`},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, err := kubectlOutputs(c, tt.manifest, "apply", "-f", "-")
			if err == nil {
				// Accepted by mistake: remove it, so the other tests are not affected.
				_, _ = c.Kubectl([]byte(tt.manifest), "delete", "--ignore-not-found", "-f", "-")
				t.Fatalf("kubectl apply accepted it, want it refused:\n%s", stdout)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(stderr, w) {
					t.Errorf("kubectl does not say %q:\n%s", w, stderr)
				}
			}
			if out := kubectl(t, c, "", "get", tt.resource, "-n", "kube-system", "--ignore-not-found", "-o", "name"); out != "" {
				t.Errorf("the refused object exists: %s", out)
			}
		})
	}

	t.Run("a valid policy on the same gateway is accepted", func(t *testing.T) {
		apply(t, c, policyYAML("e2e-admission-good", "e2e-admission", "e2e-admission", "client", topology.ExternalNet))
	})
}
