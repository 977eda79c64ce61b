package aggregated

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/egressgw/egressgw/apiserver/apis/egress/v1alpha1"
	"github.com/egressgw/egressgw/test/controlplane"
)

// TestAggregatedAPI runs the spec's example through kube-apiserver's aggregation layer:
// one control plane and one server, then each behaviour a user would notice, in order.
func TestAggregatedAPI(t *testing.T) {
	// The node segment is inside the cluster; pod CIDRs come from the Nodes.
	e := start(t, "198.51.100.0/24")
	e.specExample(t)
	// The views follow the informers: wait for the last pod to show.
	eventually(t, 30*time.Second, func() string {
		if _, err := e.cp.Kubectl(nil, "get", "podegress", "frontend", "-n", "bob"); err != nil {
			return err.Error()
		}
		return ""
	})

	t.Run("discovery lists the resources and their verbs", func(t *testing.T) {
		out := mustKubectl(t, e.cp, nil, "api-resources", "--api-group=egress.egressgw.io", "-o", "wide", "--cached=false")
		for _, want := range []string{
			`podegresses\s+pe\s+egress.egressgw.io/v1alpha1\s+true\s+PodEgress\s+get,list,watch\s+egressnat`,
			`egresspolicyviews\s+epv\s+egress.egressgw.io/v1alpha1\s+false\s+EgressPolicyView\s+get,list\s+egressnat`,
			`egresspreviews\s+egress.egressgw.io/v1alpha1\s+false\s+EgressPreview\s+create`,
		} {
			if !regexp.MustCompile(want).MatchString(out) {
				t.Errorf("api-resources does not match %q:\n%s", want, out)
			}
		}
	})

	t.Run("kubectl get prints the server's table", func(t *testing.T) {
		out := mustKubectl(t, e.cp, nil, "get", "podegresses", "-n", "alice")
		t.Logf("kubectl get podegresses -n alice:\n%s", out)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		want := []string{
			`^POD\s+POLICY\s+EGRESS IP\s+GATEWAY NODE\s+DESTINATIONS\s+OTHER TRAFFIC\s+AGE$`,
			`^backend\s+<none>\s+<none>\s+<none>\s+<none>\s+masquerade to node1 \(198.51.100.11\)\s+\S+$`,
			`^frontend\s+egress\s+198.51.100.100\s+node2\s+8.8.8.0/24\s+masquerade to node1 \(198.51.100.11\)\s+\S+$`,
		}
		if len(lines) != len(want) {
			t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), out)
		}
		for i, w := range want {
			if !regexp.MustCompile(w).MatchString(lines[i]) {
				t.Errorf("line %d %q does not match %q", i, lines[i], w)
			}
		}
	})

	t.Run("get returns the whole view", func(t *testing.T) {
		var v v1alpha1.PodEgress
		decode(t, mustKubectl(t, e.cp, nil, "get", "podegress", "frontend", "-n", "paul", "-o", "yaml"), &v)
		p := v.Policies
		if len(p) != 1 || p[0].Name != "egress" || p[0].EgressIP != "198.51.100.100" || p[0].GatewayNode != "node2" ||
			strings.Join(p[0].HeldBy, ",") != "node2" || p[0].Gateway == nil || p[0].Gateway.Name != "default" {
			t.Errorf("policies %+v", p)
		}
		if v.Pod.IP != "198.18.3.10" || v.Pod.NodeName != "node3" || v.OtherTraffic.NodeIP != "198.51.100.13" || v.Labels["role"] != "frontend" {
			t.Errorf("pod %+v, other traffic %+v, labels %v", v.Pod, v.OtherTraffic, v.Labels)
		}
	})

	t.Run("label and field selectors", func(t *testing.T) {
		tests := []struct {
			args []string
			want string
		}{
			{args: []string{"-A", "-l", "role=frontend"}, want: "alice/frontend bob/frontend paul/frontend"},
			{args: []string{"-A", "--field-selector", "pod.nodeName=node3"}, want: "bob/frontend paul/frontend"},
			{args: []string{"-n", "alice", "--field-selector", "metadata.name=backend"}, want: "alice/backend"},
		}
		for _, tt := range tests {
			out := mustKubectl(t, e.cp, nil, append([]string{"get", "podegresses", "-o", `jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name} {end}`}, tt.args...)...)
			if got := strings.TrimSpace(out); got != tt.want {
				t.Errorf("%v: %q, want %q", tt.args, got, tt.want)
			}
		}
		_, err := e.cp.Kubectl(nil, "get", "podegresses", "-A", "--field-selector", "spec.bogus=x")
		if err == nil || !strings.Contains(err.Error(), "BadRequest") && !strings.Contains(err.Error(), "not supported") {
			t.Errorf("an unknown field selector: %v, want 400", err)
		}
	})

	t.Run("the policy view and its pods subresource", func(t *testing.T) {
		out := mustKubectl(t, e.cp, nil, "get", "egresspolicyviews")
		if !regexp.MustCompile(`egress\s+198.51.100.100\s+node2\s+node2\s+<none>\s+SNAT\s+2\s+8.8.8.0/24`).MatchString(out) {
			t.Errorf("kubectl get egresspolicyviews:\n%s", out)
		}
		var pods v1alpha1.PodEgressList
		decode(t, mustKubectl(t, e.cp, nil, "get", "--raw", "/apis/egress.egressgw.io/v1alpha1/egresspolicyviews/egress/pods"), &pods)
		var names []string
		for _, p := range pods.Items {
			names = append(names, p.Namespace+"/"+p.Name)
		}
		if got := strings.Join(names, " "); got != "alice/frontend paul/frontend" {
			t.Errorf("pods of the policy: %s", got)
		}
	})

	// Users of one namespace: they may read every view and get pods in alice only.
	mustKubectl(t, e.cp, []byte(viewsButNotPods), "apply", "-f", "-")
	mustKubectl(t, e.cp, nil, "create", "role", "pod-getter", "-n", "alice", "--verb=get,list,watch", "--resource=pods")
	mustKubectl(t, e.cp, nil, "create", "clusterrolebinding", "alice-ops-views", "--clusterrole=egress-views-only", "--user=alice-ops")
	mustKubectl(t, e.cp, nil, "create", "rolebinding", "alice-ops-pods", "-n", "alice", "--role=pod-getter", "--user=alice-ops")

	t.Run("selectedPods counts only the pods the user may see", func(t *testing.T) {
		// The policy selects alice's and paul's frontends; alice-ops may get pods in alice
		// only, so the number of paul's is not hers to know.
		if got := mustKubectl(t, e.cp, nil, "get", "egresspolicyview", "egress", "-o", "jsonpath={.selectedPods}"); got != "2" {
			t.Errorf("the administrator's count %q, want 2", got)
		}
		eventually(t, 30*time.Second, func() string {
			out, stderr, err := e.cp.KubectlOutputs(nil, "--as=alice-ops", "get", "egresspolicyview", "egress", "-o", "jsonpath={.selectedPods}")
			if err != nil || out != "1" || !strings.Contains(stderr, "counts only the pods in namespaces where you may get pods") {
				return fmt.Sprintf("alice-ops: count %q, err %v, stderr %q; want 1 and the warning", out, err, stderr)
			}
			return ""
		})
		out := mustKubectl(t, e.cp, nil, "--as=alice-ops", "get", "egresspolicyviews", "--no-headers")
		if !regexp.MustCompile(`^egress\s+198.51.100.100\s+node2\s+node2\s+<none>\s+SNAT\s+1\s`).MatchString(out) {
			t.Errorf("alice-ops's kubectl get egresspolicyviews:\n%s", out)
		}
	})

	t.Run("kubectl explain works on every type", func(t *testing.T) {
		for field, want := range map[string]string{
			"podegresses":                      "how one pod's traffic leaves the cluster",
			"podegresses.policies.gatewayNode": "the node the controller placed the egress IP on",
			"podegresses.overlaps.rule":        "the longest prefix wins",
			"egresspolicyviews.selectedPods":   "how many pods the policy selects now",
			"egresspreviews.spec.source.ip":    "the pod's IPv4 address",
			"egresspreviews.status.steps":      "the packet's path",
		} {
			out := mustKubectl(t, e.cp, nil, "explain", field)
			if !strings.Contains(strings.Join(strings.Fields(strings.ToLower(out)), " "), strings.ToLower(want)) {
				t.Errorf("kubectl explain %s does not say %q:\n%s", field, want, out)
			}
		}
	})

	t.Run("previews of the spec's example", func(t *testing.T) {
		mustKubectl(t, e.cp, []byte(denyGoogleDNS), "apply", "-f", "-")
		tests := []struct {
			name, from, to string
			verdict        v1alpha1.Verdict
			sourceIP       string
			gateway        string
			object         string // what the first or dropping step names
		}{
			{name: "alice's frontend to 8.8.8.8: the gateway's first IP, via the node that holds it", from: "namespace: alice, name: frontend", to: "8.8.8.8",
				verdict: v1alpha1.VerdictSNAT, sourceIP: "198.51.100.100", gateway: "node2"},
			{name: "paul's frontend, named by IP", from: "ip: 198.18.3.10", to: "8.8.8.8",
				verdict: v1alpha1.VerdictSNAT, sourceIP: "198.51.100.100", gateway: "node2"},
			{name: "a pod without the label: its node's IP", from: "namespace: alice, name: backend", to: "8.8.8.8",
				verdict: v1alpha1.VerdictMasquerade, sourceIP: "198.51.100.11", gateway: "node1"},
			{name: "the frontend to 1.1.1.1: its node's IP", from: "namespace: alice, name: frontend", to: "1.1.1.1",
				verdict: v1alpha1.VerdictMasquerade, sourceIP: "198.51.100.11", gateway: "node1"},
			{name: "an egress NetworkPolicy denies 8.8.8.8: a drop that names it", from: "namespace: alice, name: frontend", to: "8.8.8.8:53",
				verdict: v1alpha1.VerdictDrop, object: "NetworkPolicy alice/deny-google-dns"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				dst, port, _ := strings.Cut(tt.to, ":")
				if port == "" {
					port = "443"
				}
				p := createPreview(t, e, tt.from, dst, "TCP", port)
				if p.Status.Verdict != tt.verdict || p.Status.SourceIP != tt.sourceIP || p.Status.GatewayNode != tt.gateway {
					t.Errorf("verdict %s, source %s, gateway %s; want %s, %s, %s\n%s", p.Status.Verdict, p.Status.SourceIP, p.Status.GatewayNode,
						tt.verdict, tt.sourceIP, tt.gateway, steps(p))
				}
				if tt.object != "" && (len(p.Status.Steps) != 1 || p.Status.Steps[0].Object != tt.object || p.Status.Steps[0].Action != "Drop") {
					t.Errorf("want one Drop step naming %s:\n%s", tt.object, steps(p))
				}
				if last := p.Status.Steps[len(p.Status.Steps)-1]; tt.verdict != v1alpha1.VerdictDrop && (last.Stage != v1alpha1.StageReturn || last.Action != "Deliver") {
					t.Errorf("the path does not end with the reply delivered:\n%s", steps(p))
				}
			})
		}
		t.Run("the GET form on a pod view", func(t *testing.T) {
			var p v1alpha1.EgressPreview
			decode(t, mustKubectl(t, e.cp, nil, "get", "--raw",
				"/apis/egress.egressgw.io/v1alpha1/namespaces/paul/podegresses/frontend/preview?destination=8.8.8.8&protocol=UDP&port=53"), &p)
			if p.Status.Verdict != v1alpha1.VerdictSNAT || p.Status.GatewayNode != "node2" || p.Spec.Protocol != "UDP" {
				t.Errorf("got %+v\n%s", p.Spec, steps(&p))
			}
		})
	})

	t.Run("health and metrics, with the preview latency", func(t *testing.T) {
		client := e.directClient(t)
		for path, want := range map[string]string{
			"/readyz?verbose": "[+]egress-views ok",
			"/livez":          "ok",
			"/metrics":        `egressgw_preview_duration_seconds_bucket{verdict="SNAT",le=`,
		} {
			resp, err := client.Get(serverURL + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
				t.Errorf("GET %s: %s, want it to contain %q:\n%.500s", path, resp.Status, want, body)
			}
		}
	})

	t.Run("bad input is 400 or 422 with field paths, unknown pods 404", func(t *testing.T) {
		tests := []struct {
			name   string
			stdin  string
			args   []string
			status string
		}{
			{name: "no destination", stdin: previewYAML("namespace: alice, name: frontend", "", "TCP", "443"), status: `spec.destination: Required value`},
			{name: "a bad protocol and port", stdin: previewYAML("namespace: alice, name: frontend", "8.8.8.8", "GRE", "70000"), status: `spec.protocol: Unsupported value: "GRE"`},
			{name: "an IPv6 destination", stdin: previewYAML("ip: 198.18.1.10", "2001:db8::1", "TCP", "443"), status: `spec.destination: Invalid value: "2001:db8::1"`},
			{name: "an unknown pod", stdin: previewYAML("namespace: alice, name: nope", "8.8.8.8", "TCP", "443"), status: `NotFound`},
			{name: "an unknown pod IP", stdin: previewYAML("ip: 198.18.9.9", "8.8.8.8", "TCP", "443"), status: `no running pod you may get has IP 198.18.9.9`},
			{name: "an unknown pod view", args: []string{"get", "podegress", "nope", "-n", "alice"}, status: `NotFound`},
			{name: "GET preview without a destination", args: []string{"get", "--raw", "/apis/egress.egressgw.io/v1alpha1/namespaces/alice/podegresses/frontend/preview?protocol=TCP"}, status: `destination: Required value`},
			{name: "GET preview with a port that is not a number", args: []string{"get", "--raw", "/apis/egress.egressgw.io/v1alpha1/namespaces/alice/podegresses/frontend/preview?destination=8.8.8.8&port=https"}, status: `BadRequest`},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				args, stdin := tt.args, []byte(tt.stdin)
				if args == nil {
					args = []string{"create", "-f", "-", "-o", "yaml"}
				} else {
					stdin = nil
				}
				_, stderr, err := e.cp.KubectlOutputs(stdin, args...)
				if err == nil || !strings.Contains(stderr, tt.status) {
					t.Errorf("err %v, stderr %q; want it to say %q", err, stderr, tt.status)
				}
				if strings.Contains(stderr, "InternalError") || strings.Contains(stderr, "500") {
					t.Errorf("a user's mistake got a 500: %s", stderr)
				}
			})
		}
	})

	t.Run("a user who may not get pods gets 403", func(t *testing.T) {
		// kubectl create validates by asking whether the kind is a CRD, which these users
		// may not list; the server validates anyway.
		create := []string{"create", "--validate=false", "-f", "-", "-o", "yaml"}
		mustKubectl(t, e.cp, []byte(viewsButNotPods), "apply", "-f", "-")
		// alice-viewer has the built-in view role in alice. No kube-controller-manager runs
		// here to aggregate it, so she is bound to what it aggregates: Kubernetes' own
		// rules, and the artifacts' role labelled to aggregate into it.
		for _, name := range []string{aggregatedInto(t, "view"), "system:aggregate-to-view"} {
			mustKubectl(t, e.cp, nil, "create", "rolebinding", "alice-viewer-"+strings.ReplaceAll(name, ":", "-"), "-n", "alice", "--clusterrole="+name, "--user=alice-viewer")
		}
		eventually(t, 15*time.Second, func() string {
			if _, err := e.cp.Kubectl(nil, "--as=alice-viewer", "get", "podegresses", "-n", "alice"); err != nil {
				return "the view role does not show podegresses yet: " + err.Error()
			}
			return ""
		})
		tests := []struct {
			name, as string
			stdin    string
			args     []string
			want     string   // empty: allowed
			hide     []string // what the answer must not say
		}{
			{name: "views in a namespace whose pods she may not get", as: "someone", args: []string{"get", "podegresses", "-n", "alice"},
				want: `user "someone" cannot get pods in the namespace "alice"`},
			{name: "one view", as: "someone", args: []string{"get", "podegress", "frontend", "-n", "alice"}, want: "Forbidden"},
			{name: "a preview of a pod she may not get", as: "someone", stdin: previewYAML("namespace: alice, name: frontend", "8.8.8.8", "TCP", "443"),
				args: create, want: `cannot get pods in the namespace "alice"`},
			// Nothing in the answer tells her that a pod has the IP, or where: she hears what
			// she would hear were the IP nobody's.
			{name: "a preview by IP of such a pod", as: "someone", stdin: previewYAML("ip: 198.18.1.10", "8.8.8.8", "TCP", "443"),
				args: create, want: `NotFound`, hide: []string{"alice", "Forbidden", "frontend"}},
			{name: "the view role in alice shows alice's views", as: "alice-viewer", args: []string{"get", "podegresses", "-n", "alice"}},
			{name: "and the GET preview of alice's pods", as: "alice-viewer", args: []string{"get", "--raw", "/apis/egress.egressgw.io/v1alpha1/namespaces/alice/podegresses/frontend/preview?destination=8.8.8.8"}},
			{name: "but not paul's", as: "alice-viewer", args: []string{"get", "podegresses", "-n", "paul"}, want: "Forbidden"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				var stdin []byte
				if tt.stdin != "" {
					stdin = []byte(tt.stdin)
				}
				_, stderr, err := e.cp.KubectlOutputs(stdin, append([]string{"--as=" + tt.as}, tt.args...)...)
				switch {
				case tt.want == "" && err != nil:
					t.Errorf("refused: %v", err)
				case tt.want != "" && (err == nil || !strings.Contains(stderr, tt.want)):
					t.Errorf("err %v, stderr %q; want %q", err, stderr, tt.want)
				}
				for _, h := range tt.hide {
					if strings.Contains(stderr, h) {
						t.Errorf("the answer %q says %q", stderr, h)
					}
				}
			})
		}
	})

	t.Run("watch sees a view change", func(t *testing.T) {
		w := startWatch(t, e.cp, "get", "podegresses", "-n", "alice", "--watch", "--output-watch-events", "-o", "json")
		w.next(t, func(ev watchEvent) bool { return ev.Type == "ADDED" && ev.Object.Name == "backend" })
		relabel(t, e, "alice", "backend", "frontend")
		ev := w.next(t, func(ev watchEvent) bool { return ev.Type == "MODIFIED" && ev.Object.Name == "backend" })
		if len(ev.Object.Policies) != 1 || ev.Object.Policies[0].Name != "egress" {
			t.Errorf("the modified view has policies %+v, want egress", ev.Object.Policies)
		}
		relabel(t, e, "alice", "backend", "backend")
		w.next(t, func(ev watchEvent) bool {
			return ev.Type == "MODIFIED" && ev.Object.Name == "backend" && len(ev.Object.Policies) == 0
		})
	})

	t.Run("after a gateway failover the views show the new node", func(t *testing.T) {
		w := startWatch(t, e.cp, "get", "podegresses", "-A", "-l", "role=frontend", "--watch", "--output-watch-events", "-o", "json")
		w.next(t, func(ev watchEvent) bool { return ev.Type == "ADDED" && ev.Object.Namespace == "paul" })
		failover(t, e, map[string]string{"198.51.100.100": "node3", "198.51.100.101": "node1", "198.51.100.102": "node3"})
		e.report(t, "node2")
		e.report(t, "node3", "198.51.100.100", "198.51.100.102")
		w.next(t, func(ev watchEvent) bool {
			return ev.Object.Name == "frontend" && ev.Object.Namespace == "paul" && len(ev.Object.Policies) == 1 && ev.Object.Policies[0].GatewayNode == "node3"
		})
		eventually(t, 10*time.Second, func() string {
			out := mustKubectl(t, e.cp, nil, "get", "podegresses", "-n", "alice", "frontend", "--no-headers")
			if !regexp.MustCompile(`frontend\s+egress\s+198.51.100.100\s+node3\s`).MatchString(out) {
				return "kubectl get podegresses still shows " + out
			}
			if got := mustKubectl(t, e.cp, nil, "get", "egresspolicyview", "egress", "-o", "jsonpath={.gatewayNode} {.heldBy}"); got != `node3 ["node3"]` {
				return "the policy view shows " + got
			}
			return ""
		})
		p := createPreview(t, e, "namespace: paul, name: frontend", "8.8.8.9", "TCP", "443")
		if p.Status.GatewayNode != "node3" {
			t.Errorf("the preview leaves through %s, want node3\n%s", p.Status.GatewayNode, steps(p))
		}
	})
}

// aggregatedInto returns the ClusterRole of artifacts/apiserver/aggregate-roles.yaml that
// aggregates into the built-in role, and checks it grants reading every view.
func aggregatedInto(t *testing.T, builtin string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(controlplane.RepoRoot(), "artifacts", "apiserver", "aggregate-roles.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(string(data), "\n---\n") {
		var role rbacv1.ClusterRole
		if err := yaml.UnmarshalStrict([]byte(doc), &role); err != nil {
			t.Fatal(err)
		}
		if role.Labels["rbac.authorization.k8s.io/aggregate-to-"+builtin] == "true" {
			return role.Name
		}
	}
	t.Fatalf("no ClusterRole in artifacts/apiserver aggregates into %s", builtin)
	return ""
}

const denyGoogleDNS = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-google-dns, namespace: alice}
spec:
  podSelector: {matchLabels: {role: frontend}}
  policyTypes: [Egress]
  egress:
  - to:
    - ipBlock: {cidr: 0.0.0.0/0, except: [8.8.8.8/32]}
  - to:
    - ipBlock: {cidr: 8.8.8.8/32}
    ports:
    - {protocol: TCP, port: 443}
`

// viewsButNotPods lets someone read the views and create previews, and nothing else.
const viewsButNotPods = `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: egress-views-only}
rules:
- apiGroups: [egress.egressgw.io]
  resources: [podegresses, egresspolicyviews]
  verbs: [get, list, watch]
- apiGroups: [egress.egressgw.io]
  resources: [egresspreviews]
  verbs: [create]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: someone-egress-views-only}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: egress-views-only}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: someone}
`

func previewYAML(source, dst, protocol, port string) string {
	return fmt.Sprintf(`apiVersion: egress.egressgw.io/v1alpha1
kind: EgressPreview
spec:
  source: {%s}
  destination: %q
  protocol: %s
  port: %s
`, source, dst, protocol, port)
}

func createPreview(t *testing.T, e *env, source, dst, protocol, port string) *v1alpha1.EgressPreview {
	t.Helper()
	var p v1alpha1.EgressPreview
	out := mustKubectl(t, e.cp, []byte(previewYAML(source, dst, protocol, port)), "create", "-f", "-", "-o", "yaml")
	t.Logf("kubectl create -f - -o yaml <<< {source: {%s}, destination: %s, protocol: %s, port: %s}:\n%s", source, dst, protocol, port, out)
	decode(t, out, &p)
	return &p
}

func steps(p *v1alpha1.EgressPreview) string {
	var out []string
	for i, s := range p.Status.Steps {
		out = append(out, fmt.Sprintf("%d. %s %s @%s [%s] %s", i+1, s.Stage, s.Action, s.Node, s.Object, s.Message))
	}
	return strings.Join(out, "\n")
}

func decode(t *testing.T, out string, into any) {
	t.Helper()
	if err := yaml.Unmarshal([]byte(out), into); err != nil {
		t.Fatalf("decoding %q: %v", out, err)
	}
}

func relabel(t *testing.T, e *env, namespace, name, role string) {
	t.Helper()
	ctx := context.Background()
	p, err := e.kube.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Labels["role"] = role
	if _, err := e.kube.CoreV1().Pods(namespace).Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// failover moves the floating IPs as the controller does when node2 goes down.
func failover(t *testing.T, e *env, placement map[string]string) {
	t.Helper()
	ctx := context.Background()
	groups := e.net.NetworkingV1().NetworkGatewayGroups("kube-system")
	g, err := groups.Get(ctx, "default", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g.Status.FloatingIPs = placement
	g.Status.Nodes["node2"] = "Down"
	if _, err := groups.UpdateStatus(ctx, g, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

type watchEvent struct {
	Type   string             `json:"type"`
	Object v1alpha1.PodEgress `json:"object"`
}

// watch is a running kubectl --watch whose events arrive on a channel.
type watch struct {
	events chan watchEvent
}

func startWatch(t *testing.T, cp *controlplane.ControlPlane, args ...string) *watch {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cmd := cp.KubectlCommand(ctx, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &watch{events: make(chan watchEvent, 100)}
	go func() {
		defer close(w.events)
		dec := json.NewDecoder(bufio.NewReader(stdout))
		for {
			var ev watchEvent
			if err := dec.Decode(&ev); err != nil {
				if !errors.Is(err, io.EOF) && ctx.Err() == nil {
					t.Logf("reading kubectl's watch: %v", err)
				}
				return
			}
			w.events <- ev
		}
	}()
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("kubectl %s: %s", strings.Join(args, " "), stderr.String())
		}
	})
	return w
}

// next returns the first event that matches, within 30 seconds.
func (w *watch) next(t *testing.T, match func(watchEvent) bool) watchEvent {
	t.Helper()
	timeout := time.After(30 * time.Second)
	var seen []string
	for {
		select {
		case ev, ok := <-w.events:
			if !ok {
				t.Fatalf("kubectl's watch ended; events seen: %v", seen)
			}
			if match(ev) {
				return ev
			}
			seen = append(seen, fmt.Sprintf("%s %s/%s", ev.Type, ev.Object.Namespace, ev.Object.Name))
		case <-timeout:
			t.Fatalf("no matching watch event within 30 seconds; events seen: %v", seen)
		}
	}
}
