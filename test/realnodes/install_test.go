package realnodes

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/egressgw/egressgw/test/controlplane"
	"github.com/egressgw/egressgw/test/testenv"
	"github.com/egressgw/egressgw/test/topology"
)

// TestInstallOnRealNodes installs the product exactly as docs/install.md tells a user, on
// two real nodes: the images imported into each node's containerd under the names of the
// overlay, kubectl apply -k of an overlay over artifacts/, and every rollout the document
// lists. Then each component is seen doing its job: the webhook refuses a bad gateway and
// admits a good one, the controllers elected a leader, an agent is Ready on each node and
// reports it, and the aggregated API answers. Real pods' traffic then goes through the
// gateway (podTraffic), network policy is applied first (networkPolicyFirst), and
// traffic keeps going, leaking nothing, through an agent upgrade and
// the gateway node's failure (streamThroughFaults), before the product is uninstalled.
func TestInstallOnRealNodes(t *testing.T) {
	need(t)
	ctx := context.Background()
	prepared := time.Now()
	base, err := ImageTarballs()
	if err != nil {
		t.Fatal(err)
	}
	product, err := InstallTarballs()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("images ready in %s", time.Since(prepared).Round(time.Millisecond))
	l := startCluster(ctx, t, append(base, product...))
	cp, c, start := l.CP, l.Cluster, l.Started
	kubectl := kubectlFor(t, cp)
	t.Cleanup(func() {
		if t.Failed() {
			for _, args := range [][]string{
				{"get", "pods,apiservices,validatingwebhookconfigurations", "-A", "-o", "wide"},
				{"-n", "egressgw-system", "get", "events", "--sort-by=.lastTimestamp"},
				{"get", "apiservice", "v1alpha1.egress.egressgw.io", "-o", "yaml"},
				{"-n", "egressgw-system", "logs", "-l", "app.kubernetes.io/name in (egressgw-agent,egressgw-webhook,egressgw-apiserver,egressgw-controller)", "--tail=30", "--prefix", "--ignore-errors"},
			} {
				out, err := cp.Kubectl(nil, args...)
				t.Logf("kubectl %s:\n%s%v", strings.Join(args, " "), out, err)
			}
		}
	})

	dir := t.TempDir()
	if err := WriteOverlay(dir, controlplane.ServiceCIDR, topology.PodSupernet.String()); err != nil {
		t.Fatal(err)
	}
	if err := Install(ctx, cp, dir, t.Logf); err != nil {
		t.Fatal(err)
	}
	t.Logf("installed, every rollout done and the APIService Available, %s after the cluster's start", time.Since(start).Round(time.Millisecond))

	// Each image runs under the overlay's name.
	images := kubectl(nil, "-n", "egressgw-system", "get", "pods", "-o", "jsonpath={range .items[*]}{.spec.containers[0].image}{\"\\n\"}{end}")
	for _, c := range Components {
		if want := InstallRepo + "/" + c + ":" + InstallTag; !strings.Contains(images, want) {
			t.Errorf("no pod runs %s; images:\n%s", want, images)
		}
	}

	// The webhook answers admission: a floating IP in the overlay's service range is refused.
	_, stderr, err := cp.KubectlOutputs([]byte(gatewayManifest("install-bad", "10.0.0.50")), "apply", "-f", "-")
	if err == nil {
		t.Errorf("a gateway with a floating IP in the service range was admitted")
	} else if want := `spec.floatingIPs[0]: Invalid value: "10.0.0.50"`; !strings.Contains(stderr, want) {
		t.Errorf("the refusal does not say %q:\n%s", want, stderr)
	} else {
		t.Logf("refused: %s", strings.TrimSpace(stderr))
	}
	kubectl([]byte(gatewayManifest("install-good", "198.51.100.100")), "apply", "-f", "-")

	// The controllers elected a leader among their replicas.
	var lease struct {
		Spec struct {
			HolderIdentity string `json:"holderIdentity"`
		} `json:"spec"`
	}
	if err := json.Unmarshal([]byte(kubectl(nil, "-n", "egressgw-system", "get", "lease", "egressgw-controller", "-o", "json")), &lease); err != nil {
		t.Fatal(err)
	}
	controllers := strings.Fields(kubectl(nil, "-n", "egressgw-system", "get", "pods", "-l", "app.kubernetes.io/name=egressgw-controller", "-o", "jsonpath={.items[*].metadata.name}"))
	if len(controllers) != 2 || !slices.ContainsFunc(controllers, func(p string) bool { return strings.HasPrefix(lease.Spec.HolderIdentity, p) }) {
		t.Errorf("the controller Lease is held by %q, not by one of the controller pods %v", lease.Spec.HolderIdentity, controllers)
	} else {
		t.Logf("controller leader: %s (of %v)", lease.Spec.HolderIdentity, controllers)
	}

	// A Ready agent on each node, and each node's report.
	var agents struct {
		Items []struct {
			Spec struct {
				NodeName string `json:"nodeName"`
			} `json:"spec"`
			Status struct {
				Conditions []struct{ Type, Status string } `json:"conditions"`
			} `json:"status"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(kubectl(nil, "-n", "egressgw-system", "get", "pods", "-l", "app.kubernetes.io/name=egressgw-agent", "-o", "json")), &agents); err != nil {
		t.Fatal(err)
	}
	readyOn := map[string]bool{}
	for _, p := range agents.Items {
		for _, cond := range p.Status.Conditions {
			if cond.Type == "Ready" && cond.Status == "True" {
				readyOn[p.Spec.NodeName] = true
			}
		}
	}
	var ngn string
	deadline := time.Now().Add(time.Minute)
	for {
		ngn = kubectl(nil, "get", "networkgatewaynodes", "-n", "kube-system", "-o", "wide")
		if !slices.ContainsFunc(c.Nodes, func(n *Node) bool { return lineOf(ngn, n.Name) == "" }) || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("kubectl get networkgatewaynodes -n kube-system -o wide:\n%s", ngn)
	for _, n := range c.Nodes {
		if !readyOn[n.Name] {
			t.Errorf("no Ready agent pod on %s", n.Name)
		}
		if lineOf(ngn, n.Name) == "" {
			t.Errorf("no NetworkGatewayNode report of %s", n.Name)
		}
	}

	// The aggregated API answers, through the APIService.
	pe := kubectl(nil, "get", "podegresses", "-A")
	t.Logf("kubectl get podegresses -A:\n%s", pe)
	if !strings.Contains(pe, "egressgw-system") {
		t.Errorf("kubectl get podegresses -A lists no pod of egressgw-system:\n%s", pe)
	}

	rss, by, err := l.RSS()
	if err != nil {
		t.Fatal(err)
	}
	self, _ := testenv.ProcStatus(0, "VmRSS")
	t.Logf("RSS: %d MB (control plane, nodes, shims, pods; MB by command: %s), plus %d MB of the test binary", rss>>20, by, self>>20)

	egressIP := netip.MustParseAddr("198.51.100.100")
	podTraffic(t, l, egressIP)
	t.Run("network policy first", func(t *testing.T) { networkPolicyFirst(t, l, egressIP) })
	streamThroughFaults(t, l, egressIP)

	uninstall(t, l, dir)
}

// uninstall follows docs/install.md's "Uninstall" to the letter, with kubectl, and then
// finds nothing of the product's on any node: no nft table, no rule at 2640 to 2643, no
// route in tables 2640 and 2642, no floating IP, no pin in the node's bpffs. The nft table and the
// pins are seen on the nodes first, so that the check can fail.
func uninstall(t *testing.T, l *Local, install string) {
	t.Helper()
	kubectl := kubectlFor(t, l.CP)
	for _, n := range l.Nodes {
		before := strings.Join(nodeState(t, n, false), "; ")
		for _, want := range []string{nodeChecks[0].what, nodeChecks[3].what} {
			if !strings.Contains(before, want) {
				t.Fatalf("before uninstalling, %s has no %s (it has: %s)", n.Name, want, before)
			}
		}
		t.Logf("before uninstalling, %s has: %s", n.Name, before)
	}
	start := time.Now()
	// 1. Stop egress through the gateways, and wait until no node holds a floating IP.
	kubectl(nil, "delete", "egressnatpolicies", "--all")
	kubectl(nil, "delete", "networkgatewaygroups,anthosnetworkgateways", "--all", "-A")
	deadline := time.Now().Add(time.Minute)
	for {
		held := kubectl(nil, "get", "ngn", "-n", "kube-system", "-o", "jsonpath={.items[*].status.floatingIPs}")
		if strings.TrimSpace(held) == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nodes still hold floating IPs a minute after every gateway went: %s", held)
		}
		time.Sleep(250 * time.Millisecond)
	}
	// 2. Remove the agents, then clean every node, with an overlay over artifacts/uninstall
	// that names the agent's image as the install's does.
	cleanup := t.TempDir()
	base, err := filepath.Rel(cleanup, filepath.Join(controlplane.RepoRoot(), "artifacts", "uninstall"))
	if err != nil {
		t.Fatal(err)
	}
	k := fmt.Sprintf("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- %s\nimages:\n- {name: egressgw/egressgw-agent, newName: %s/egressgw-agent, newTag: %s}\n",
		base, InstallRepo, InstallTag)
	if err := os.WriteFile(filepath.Join(cleanup, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	kubectl(nil, "-n", "egressgw-system", "delete", "daemonset", "egressgw-agent")
	kubectl(nil, "apply", "-k", cleanup)
	waitKubectl(t, l.CP, "-n", "egressgw-system", "rollout", "status", "daemonset/egressgw-agent-uninstall", "--timeout=3m")
	kubectl(nil, "delete", "-k", cleanup)
	// 3. Remove the rest, the APIService first.
	kubectl(nil, "delete", "apiservice", "v1alpha1.egress.egressgw.io")
	waitKubectl(t, l.CP, "delete", "-k", install, "--ignore-not-found", "--timeout=3m")
	for _, lease := range strings.Fields(kubectl(nil, "-n", "kube-system", "get", "lease", "-o", "name")) {
		if strings.Contains(lease, "/egressgw-node-") {
			kubectl(nil, "-n", "kube-system", "delete", lease)
		}
	}
	t.Logf("uninstalled as docs/install.md says in %s", time.Since(start).Round(time.Millisecond))
	for _, n := range l.Nodes {
		if left := nodeState(t, n, true); len(left) > 0 {
			t.Errorf("after uninstalling, %s still has: %s", n.Name, strings.Join(left, "; "))
		}
	}
	if left := kubectl(nil, "get", "crd", "-o", "name"); strings.Contains(left, "networking.gke.io") {
		t.Errorf("CRDs left: %s", left)
	}
}

// nodeChecks are the kinds of state the agent leaves on a node, each a shell command run
// in the node's network namespace and its containerd's mount namespace (where the node's
// own bpffs is), printing what it finds.
var nodeChecks = []struct{ what, script string }{
	{"the nft table ip egressgw", "nft list tables | grep -w egressgw || true"},
	{"ip rules at 2640-2643", "ip rule show | grep -E '^264[0-3]:' || true"},
	{"routes in tables 2640 and 2642", "ip route show table 2640 2>/dev/null; ip route show table 2642 2>/dev/null; true"},
	{"pins under /sys/fs/bpf/egressgw", "ls /sys/fs/bpf/egressgw 2>/dev/null || true"},
}

// nodeState lists, for each kind of nodeChecks found on n, what was found, and the
// floating IPs (labelled <dev>:egw) if withIPs.
func nodeState(t *testing.T, n *Node, withIPs bool) []string {
	t.Helper()
	var found []string
	for _, check := range nodeChecks {
		out, err := exec.Command("nsenter", "--mount=/proc/"+strconv.Itoa(n.containerd.cmd.Process.Pid)+"/ns/mnt",
			"--net=/run/netns/"+n.NS, "--", "sh", "-c", check.script).CombinedOutput()
		if err != nil {
			t.Fatalf("checking %s on %s: %v\n%s", check.what, n.Name, err, out)
		}
		if s := strings.TrimSpace(string(out)); s != "" {
			found = append(found, check.what+": "+strings.ReplaceAll(s, "\n", ", "))
		}
	}
	if !withIPs {
		return found
	}
	out, err := exec.Command("nsenter", "--net=/run/netns/"+n.NS, "--", "ip", "-4", "-o", "addr", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("listing addresses on %s: %v\n%s", n.Name, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, ":egw") {
			found = append(found, "a floating IP: "+strings.Join(strings.Fields(line)[1:4], " "))
		}
	}
	return found
}

func gatewayManifest(name, ip string) string {
	return fmt.Sprintf(`apiVersion: networking.gke.io/v1
kind: NetworkGatewayGroup
metadata: {namespace: kube-system, name: %s}
spec:
  floatingIPs: [%s]
`, name, ip)
}
