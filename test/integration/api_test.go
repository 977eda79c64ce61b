package integration

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/egressgw/egressgw/apiserver/apis/networking/v1alpha1"
	"github.com/egressgw/egressgw/test/controlplane"
)

// TestAPI runs the spec's manifests, and bad ones, through a real kube-apiserver with kubectl.
func TestAPI(t *testing.T) {
	cp := controlplane.StartForTest(t)
	mustKubectl(t, cp, nil, "create", "namespace", "cluster-cluster1")

	t.Run("spec manifests apply verbatim and read back unchanged", func(t *testing.T) {
		for _, m := range specManifests {
			t.Run(m.file, func(t *testing.T) {
				if m.needs != "" {
					defer applySpec(t, cp, m.needs)()
				}
				want := decode(t, readTestdata(t, filepath.Join("spec", m.file)))
				defer applySpec(t, cp, m.file)()

				got := getJSON(t, cp, m.group, want)
				// Status belongs to the controller: a status in a manifest is not stored,
				// since every resource has a status subresource.
				if status, ok := got["status"].(map[string]any); ok && len(status) > 0 {
					t.Errorf("status was stored from the manifest: %v", status)
				}
				delete(want, "status")
				if diff := subsetDiff(want, got); diff != "" {
					t.Errorf("read back differs from the manifest:\n%s", diff)
				}
			})
		}
	})

	t.Run("a v1alpha1 policy reads as v1 and back without loss", func(t *testing.T) {
		defer applySpec(t, cp, "v1alpha1-anthosnetworkgateway-status.yaml")()
		defer applySpec(t, cp, "v1alpha1-egressnatpolicy.yaml")()
		manifest := decode(t, readTestdata(t, "spec/v1alpha1-egressnatpolicy.yaml"))

		asV1 := getJSON(t, cp, "egressnatpolicies.v1.networking.gke.io", manifest)
		wantV1 := decode(t, []byte(`
sources:
- {namespaceSelector: {matchLabels: {user: alice}}, podSelector: {matchLabels: {role: frontend}}}
- {namespaceSelector: {matchLabels: {user: paul}}, podSelector: {matchLabels: {role: frontend}}}
action: SNAT
destinations: [{cidr: 8.8.8.0/24}]
egressSourceIP: 192.168.1.100
`))
		if diff := cmp.Diff(wantV1, asV1["spec"]); diff != "" {
			t.Errorf("v1 spec (-want +got):\n%s", diff)
		}
		back := getJSON(t, cp, "egressnatpolicies.v1alpha1.networking.gke.io", manifest)
		if diff := cmp.Diff(manifest["spec"], back["spec"]); diff != "" {
			t.Errorf("v1alpha1 spec after the round trip (-want +got):\n%s", diff)
		}
		annotations, _ := back["metadata"].(map[string]any)["annotations"].(map[string]any)
		if v, ok := annotations[v1alpha1.V1FieldsAnnotation]; ok {
			t.Errorf("annotation %s appeared on a policy written as v1alpha1: %v", v1alpha1.V1FieldsAnnotation, v)
		}
	})

	t.Run("a v1 policy reads as v1alpha1 and back without loss", func(t *testing.T) {
		defer applySpec(t, cp, "v1-networkgatewaygroup-status.yaml")()
		defer applySpec(t, cp, "v1-egressnatpolicy.yaml")()
		manifest := decode(t, readTestdata(t, "spec/v1-egressnatpolicy.yaml"))

		asAlpha := getJSON(t, cp, "egressnatpolicies.v1alpha1.networking.gke.io", manifest)
		spec := asAlpha["spec"].(map[string]any)
		if diff := cmp.Diff([]any{"8.8.8.0/24"}, spec["destinationCIDRs"]); diff != "" {
			t.Errorf("v1alpha1 destinationCIDRs (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(manifest["spec"].(map[string]any)["sources"], spec["egress"]); diff != "" {
			t.Errorf("v1alpha1 egress (-want +got):\n%s", diff)
		}
		back := getJSON(t, cp, "egressnatpolicies.v1.networking.gke.io", manifest)
		if diff := cmp.Diff(manifest["spec"], back["spec"]); diff != "" {
			t.Errorf("v1 spec after the round trip (-want +got):\n%s", diff)
		}
	})

	t.Run("kubectl explain teaches the fields", func(t *testing.T) {
		tests := []struct {
			name string
			args []string
			want []string
		}{{
			name: "policy sources",
			args: []string{"egressnatpolicies.spec.sources"},
			want: []string{"networking.gke.io", "namespaceSelector", "podSelector", "any source (OR)"},
		}, {
			name: "source selectors are full label selectors",
			args: []string{"egressnatpolicies.spec.sources.namespaceSelector"},
			want: []string{"matchLabels", "matchExpressions"},
		}, {
			name: "policy destinations",
			args: []string{"egressnatpolicies.spec.destinations.cidr"},
			want: []string{"IPv4 address range", "IPv4-only"},
		}, {
			name: "gateway status",
			args: []string{"networkgatewaygroups.status"},
			want: []string{"nodes", "floatingIPs", "conditions", "Up or Down"},
		}, {
			name: "legacy policy",
			args: []string{"egressnatpolicies.spec", "--api-version=networking.gke.io/v1alpha1"},
			want: []string{"egressSourceIP", "destinationCIDRs", "egress", "-required-"},
		}, {
			name: "node report",
			args: []string{"networkgatewaynodes.status.interfaces"},
			want: []string{"subnets", "CIDR notation"},
		}}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				out := mustKubectl(t, cp, nil, append([]string{"explain"}, tt.args...)...)
				for _, w := range tt.want {
					if !strings.Contains(out, w) {
						t.Errorf("kubectl explain %s does not say %q:\n%s", strings.Join(tt.args, " "), w, out)
					}
				}
			})
		}
	})

	t.Run("structurally invalid manifests are rejected naming the field", func(t *testing.T) {
		policy := func(spec string) string {
			return "apiVersion: networking.gke.io/v1\nkind: EgressNATPolicy\nmetadata: {name: bad}\nspec:\n" + spec
		}
		const (
			sources = "  sources: [{podSelector: {matchLabels: {role: frontend}}}]\n"
			ref     = "  gatewayRef: {name: default, namespace: kube-system}\n"
		)
		tests := []struct {
			name     string
			manifest string
			want     []string
		}{{
			name:     "no destinations",
			manifest: policy(sources + "  action: SNAT\n" + ref),
			want:     []string{`spec.destinations: Required value`},
		}, {
			name:     "empty destinations",
			manifest: policy(sources + "  action: SNAT\n  destinations: []\n" + ref),
			want:     []string{`spec.destinations: Invalid value`, `should have at least 1 items`},
		}, {
			name:     "action DNAT",
			manifest: policy(sources + "  action: DNAT\n  destinations: [{cidr: 8.8.8.0/24}]\n" + ref),
			want:     []string{`spec.action: Unsupported value: "DNAT": supported values: "SNAT"`},
		}, {
			name:     "prefix length 33",
			manifest: policy(sources + "  action: SNAT\n  destinations: [{cidr: 8.8.8.0/33}]\n" + ref),
			want:     []string{`spec.destinations[0].cidr: Invalid value: "8.8.8.0/33"`, `must be of type cidr`},
		}, {
			name:     "IPv6 destination",
			manifest: policy(sources + "  action: SNAT\n  destinations: [{cidr: '2001:db8::/32'}]\n" + ref),
			want:     []string{`spec.destinations[0].cidr`, `must be an IPv4 CIDR such as 8.8.8.0/24: the egress NAT gateway is IPv4-only`},
		}, {
			name:     "no sources",
			manifest: policy("  action: SNAT\n  destinations: [{cidr: 8.8.8.0/24}]\n" + ref),
			want:     []string{`spec.sources: Required value`},
		}, {
			name:     "gatewayRef without namespace",
			manifest: policy(sources + "  action: SNAT\n  destinations: [{cidr: 8.8.8.0/24}]\n  gatewayRef: {name: default}\n"),
			want:     []string{`spec.gatewayRef.namespace: Required value`},
		}, {
			name:     "no gatewayRef",
			manifest: policy(sources + "  action: SNAT\n  destinations: [{cidr: 8.8.8.0/24}]\n"),
			want:     []string{`set gatewayRef to the NetworkGatewayGroup whose first floating IP this policy uses`},
		}, {
			name:     "floating IP 300.1.1.1",
			manifest: "apiVersion: networking.gke.io/v1\nkind: NetworkGatewayGroup\nmetadata: {name: bad, namespace: kube-system}\nspec:\n  floatingIPs: [192.168.1.100, 300.1.1.1]\n",
			want:     []string{`spec.floatingIPs[1]: Invalid value: "300.1.1.1"`, `must be of type ipv4`},
		}, {
			name:     "floating IP twice",
			manifest: "apiVersion: networking.gke.io/v1\nkind: NetworkGatewayGroup\nmetadata: {name: bad, namespace: kube-system}\nspec:\n  floatingIPs: [192.168.1.100, 192.168.1.100]\n",
			want:     []string{`spec.floatingIPs[1]: Duplicate value: "192.168.1.100"`},
		}, {
			name:     "legacy policy without egressSourceIP",
			manifest: "apiVersion: networking.gke.io/v1alpha1\nkind: EgressNATPolicy\nmetadata: {name: bad}\nspec:\n  egress: [{podSelector: {}}]\n  destinationCIDRs: [8.8.8.0/24]\n",
			want:     []string{`spec.egressSourceIP: Required value`},
		}, {
			name:     "legacy floating IP 300.1.1.1",
			manifest: "apiVersion: networking.gke.io/v1alpha1\nkind: AnthosNetworkGateway\nmetadata: {name: bad, namespace: kube-system}\nspec:\n  floatingIPs: [300.1.1.1]\n",
			want:     []string{`spec.floatingIPs[0]: Invalid value: "300.1.1.1"`},
		}}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				out, err := cp.Kubectl([]byte(tt.manifest), "apply", "-f", "-")
				var kerr *controlplane.KubectlError
				if !errors.As(err, &kerr) {
					t.Fatalf("accepted, want rejected: %s %v", out, err)
				}
				for _, w := range tt.want {
					if !strings.Contains(kerr.Stderr, w) {
						t.Errorf("error does not say %q:\n%s", w, kerr.Stderr)
					}
				}
			})
		}
	})

	t.Run("printer columns and the egressnat category", func(t *testing.T) {
		gateway := filepath.Join(controlplane.RepoRoot(), "test", "testdata", "spec", "v1-networkgatewaygroup-status.yaml")
		policy := filepath.Join(controlplane.RepoRoot(), "test", "testdata", "spec", "v1-egressnatpolicy.yaml")
		mustKubectl(t, cp, nil, "apply", "-f", gateway, "-f", policy)
		defer mustKubectl(t, cp, nil, "delete", "-f", gateway, "-f", policy)
		mustKubectl(t, cp, nil, "patch", "ngg", "default", "-n", "kube-system", "--subresource=status", "--type=merge",
			"-p", `{"status":{"nodes":{"worker1":"Up","worker2":"Up"},"floatingIPs":{"192.168.1.100":"worker1","192.168.1.101":"worker2","192.168.1.102":"worker1"},`+
				`"standbys":{"192.168.1.100":"worker2","192.168.1.101":"worker1","192.168.1.102":"worker2"}}}`)

		out := mustKubectl(t, cp, nil, "get", "networkgatewaygroups", "-A")
		for _, w := range []string{"FLOATING IPS", "PLACEMENT", "STANDBYS", `["192.168.1.100","192.168.1.101","192.168.1.102"]`,
			`"192.168.1.101":"worker2"`, `"192.168.1.101":"worker1"`} {
			if !strings.Contains(out, w) {
				t.Errorf("kubectl get networkgatewaygroups -A does not show %q:\n%s", w, out)
			}
		}
		out = mustKubectl(t, cp, nil, "get", "enp")
		for _, w := range []string{"EGRESS IP", "GATEWAY", "READY", "AGE", "egress", "default"} {
			if !strings.Contains(out, w) {
				t.Errorf("kubectl get enp does not show %q:\n%s", w, out)
			}
		}
		out = mustKubectl(t, cp, nil, "get", "egressnat", "-A")
		for _, w := range []string{"networkgatewaygroup.networking.gke.io/default", "egressnatpolicy.networking.gke.io/egress"} {
			if !strings.Contains(out, w) {
				t.Errorf("kubectl get egressnat -A does not list %q:\n%s", w, out)
			}
		}
		// The spec's "Up // Or Down" is prose, not a state: the status schema says so.
		_, err := cp.Kubectl(nil, "patch", "ngg", "default", "-n", "kube-system", "--subresource=status", "--type=merge",
			"-p", `{"status":{"nodes":{"worker2":"Up // Or Down"}}}`)
		if err == nil || !strings.Contains(err.Error(), `status.nodes.worker2: Unsupported value: "Up // Or Down"`) {
			t.Errorf("status node state %q: got %v, want it rejected", "Up // Or Down", err)
		}
	})
}

// TestInstallManifests builds artifacts/ and artifacts/uninstall/ with kustomize and has a
// real kube-apiserver, with nothing of ours installed yet, accept every object of both in a
// server-side dry run.
func TestInstallManifests(t *testing.T) {
	cp := controlplane.StartForTestWith(t, controlplane.Options{Bare: true})
	// A dry run creates nothing, so the namespaced objects need their namespace for real.
	mustKubectl(t, cp, nil, "apply", "-f", filepath.Join(controlplane.RepoRoot(), "artifacts", "webhook", "namespace.yaml"))
	for _, dir := range installDirs {
		t.Run(dir, func(t *testing.T) {
			manifests := mustKubectl(t, cp, nil, "kustomize", filepath.Join(controlplane.RepoRoot(), dir))
			out := mustKubectl(t, cp, []byte(manifests), "apply", "--dry-run=server", "-f", "-")
			for _, w := range objectNames(t, manifests) {
				if !strings.Contains(out, w+" ") {
					t.Errorf("server-side dry run does not list %s:\n%s", w, out)
				}
			}
		})
	}
}

// objectNames are the objects of a kustomize build as kubectl apply names them:
// kind.group/name, or kind/name for the core group.
func objectNames(t *testing.T, manifests string) []string {
	t.Helper()
	objs, err := controlplane.ManifestObjects(manifests)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range objs {
		names = append(names, o.Ref)
	}
	if len(names) == 0 {
		t.Fatal("the kustomize build has no objects")
	}
	return names
}

// applySpec applies a manifest of testdata/spec and returns the function that deletes it.
func applySpec(t *testing.T, cp *controlplane.ControlPlane, file string) func() {
	t.Helper()
	path := filepath.Join(controlplane.RepoRoot(), "test", "testdata", "spec", file)
	mustKubectl(t, cp, nil, "apply", "-f", path)
	return func() { mustKubectl(t, cp, nil, "delete", "-f", path) }
}

func mustKubectl(t *testing.T, cp *controlplane.ControlPlane, stdin []byte, args ...string) string {
	t.Helper()
	out, err := cp.Kubectl(stdin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// getJSON reads back the object that manifest describes, as resource (kubectl's
// resource.version.group form).
func getJSON(t *testing.T, cp *controlplane.ControlPlane, resource string, manifest map[string]any) map[string]any {
	t.Helper()
	meta := manifest["metadata"].(map[string]any)
	args := []string{"get", resource, meta["name"].(string), "-o", "json"}
	if ns, ok := meta["namespace"].(string); ok {
		args = append(args, "-n", ns)
	}
	var obj map[string]any
	if err := json.Unmarshal([]byte(mustKubectl(t, cp, nil, args...)), &obj); err != nil {
		t.Fatal(err)
	}
	return obj
}

func decode(t *testing.T, data []byte) map[string]any {
	t.Helper()
	var obj map[string]any
	if err := yaml.Unmarshal(data, &obj); err != nil {
		t.Fatal(err)
	}
	return obj
}

// subsetDiff describes where want is not contained in got: every field of want must be in
// got with the same value; got may have more (the server adds metadata).
func subsetDiff(want, got any) string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return cmp.Diff(want, got)
		}
		var diffs []string
		for k, v := range w {
			if d := subsetDiff(v, g[k]); d != "" {
				diffs = append(diffs, k+": "+d)
			}
		}
		return strings.Join(diffs, "\n")
	default:
		return cmp.Diff(want, got)
	}
}
