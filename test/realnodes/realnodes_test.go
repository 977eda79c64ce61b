package realnodes

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/egressgw/egressgw/test/controlplane"
	"github.com/egressgw/egressgw/test/peer"
	"github.com/egressgw/egressgw/test/testenv"
	"github.com/egressgw/egressgw/test/topology"
)

// need fails the test under CI=true, and skips it otherwise, when this machine lacks
// what real nodes run.
func need(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t, "network namespaces, containerd, cgroups")
	var missing []string
	for _, prog := range []string{"containerd", "containerd-shim-runc-v2", "ctr", "runc", "nsenter", "unshare", "nft"} {
		if _, err := exec.LookPath(prog); err != nil {
			missing = append(missing, prog)
		}
	}
	for _, plugin := range []string{"ptp", "host-local", "loopback"} {
		if _, err := os.Stat(filepath.Join(CNIBinDir, plugin)); err != nil {
			missing = append(missing, filepath.Join(CNIBinDir, plugin))
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("missing %s (apt-get install containerd runc containernetworking-plugins nftables util-linux)", strings.Join(missing, ", "))
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// TestTwoRealNodes starts a control plane with the scheduler and the controller
// manager, and two real nodes; each runs a pod scheduled to it by node name, with an
// address of its own pod subnet, and a pod on one node reaches the pod on the other.
func TestTwoRealNodes(t *testing.T) {
	need(t)
	ctx := context.Background()
	start := time.Now()
	images, err := ImageTarballs()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("images ready in %s", time.Since(start).Round(time.Millisecond))
	l := startCluster(ctx, t, images)
	cp, c, start := l.CP, l.Cluster, l.Started

	out, err := cp.Kubectl(nil, "get", "nodes", "-o", "wide")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kubectl get nodes -o wide:\n%s", out)
	for _, n := range c.Nodes {
		line := lineOf(out, n.Name)
		for _, want := range []string{"Ready", "v1.37.2", n.IP.String(), "containerd://1.6."} {
			if !strings.Contains(line, want) {
				t.Errorf("kubectl get nodes shows no %q for %s: %q", want, n.Name, line)
			}
		}
	}

	// kube-proxy runs in nftables mode: its table is in each node's namespace.
	for _, n := range c.Nodes {
		out, err := exec.Command("nsenter", "--net=/run/netns/"+n.NS, "--", "nft", "list", "tables").CombinedOutput()
		if err != nil {
			t.Fatalf("nft list tables on %s: %v: %s", n.Name, err, out)
		}
		if !strings.Contains(string(out), "table ip kube-proxy") {
			t.Errorf("node %s has no nftables table of kube-proxy:\n%s", n.Name, out)
		}
	}

	// One server pod a node, each placed by the scheduler through a node selector.
	ips := map[string]netip.Addr{}
	for _, n := range c.Nodes {
		name := "server-" + n.Name
		if _, err := cp.Kubectl([]byte(podManifest(name, n.Name, "serve")), "create", "-f", "-"); err != nil {
			t.Fatal(err)
		}
		ip, err := waitPod(cp, name, "Running", 2*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if !n.PodCIDR.Contains(ip) {
			t.Errorf("pod %s on %s has IP %s, outside the node's pod CIDR %s", name, n.Name, ip, n.PodCIDR)
		}
		ips[n.Name] = ip
	}
	t.Logf("pods Running at %v, %s after start", ips, time.Since(start).Round(time.Millisecond))

	// A pod on node2 asks the server on node1 who it is: it exits 0 only with an answer.
	a, b := c.Nodes[0], c.Nodes[1]
	target := netip.AddrPortFrom(ips[a.Name], peer.Port).String()
	if _, err := cp.Kubectl([]byte(podManifest("client-"+b.Name, b.Name, "who", target)), "create", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	if _, err := waitPod(cp, "client-"+b.Name, "Succeeded", 2*time.Minute); err != nil {
		t.Fatalf("the pod on %s did not reach the pod on %s at %s: %v", b.Name, a.Name, target, err)
	}
	// kube-apiserver reaches the kubelets, with its client certificate, through its egress
	// selector: kubectl logs shows what the client saw (its own address, no NAT between
	// pods), and kubectl exec runs the same question in the server pod on node2.
	logs, err := cp.Kubectl(nil, "logs", "client-"+b.Name)
	if err != nil {
		t.Fatalf("kubectl logs: %v", err)
	}
	if seen, err := netip.ParseAddrPort(strings.TrimSpace(logs)); err != nil || !b.PodCIDR.Contains(seen.Addr()) {
		t.Errorf("kubectl logs client-%s = %q, want the pod's own address in %s", b.Name, logs, b.PodCIDR)
	}
	execOut, err := cp.Kubectl(nil, "exec", "server-"+b.Name, "--", TestClientEntrypoint, "who", target)
	if err != nil {
		t.Fatalf("kubectl exec: %v", err)
	}
	if seen, err := netip.ParseAddrPort(strings.TrimSpace(execOut)); err != nil || seen.Addr() != ips[b.Name] {
		t.Errorf("kubectl exec server-%s -- who %s = %q, want %s:<port>", b.Name, target, execOut, ips[b.Name])
	}
	t.Logf("kubectl logs: %s; kubectl exec: %s", strings.TrimSpace(logs), strings.TrimSpace(execOut))
	// And node1's own namespace reaches the pod on node2, routed over the segment: the
	// server sees node1's address, with no NAT on the way.
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := topology.Dial(dctx, a.NS, "tcp4", netip.AddrPortFrom(ips[b.Name], peer.Port).String())
	if err != nil {
		t.Fatalf("node %s cannot reach the pod on %s: %v", a.Name, b.Name, err)
	}
	defer conn.Close()
	seen, err := peer.WhoTCP(dctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if seen.Addr() != a.IP {
		t.Errorf("the pod on %s saw node %s as %s, want %s", b.Name, a.Name, seen.Addr(), a.IP)
	}

	rss, by, err := l.RSS()
	if err != nil {
		t.Fatal(err)
	}
	self, _ := testenv.ProcStatus(0, "VmRSS")
	t.Logf("RSS: %d MB (control plane, nodes, shims, pods; MB by command: %s), plus %d MB of the test binary", rss>>20, by, self>>20)
}

// startCluster starts a Local of two nodes with images imported (StartLocal); it is
// stopped and removed when the test ends, with the components' logs shown if it failed.
func startCluster(ctx context.Context, t *testing.T, images []string) *Local {
	t.Helper()
	return startClusterWith(ctx, t, LocalOptions{Nodes: 2}, images)
}

// startClusterWith starts a Local shaped by opts, stopped and removed when the test ends
// (its logs kept if the test failed).
func startClusterWith(ctx context.Context, t *testing.T, opts LocalOptions, images []string) *Local {
	t.Helper()
	l, err := StartLocalWith(ctx, opts, images, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range l.Nodes {
				for _, log := range n.Logs() {
					t.Logf("%s:\n%s", log, tail(log, 3000))
				}
			}
			for _, name := range []string{"kube-scheduler", "kube-controller-manager"} {
				t.Logf("%s:\n%s", name, tail(l.CP.ComponentLog(name), 3000))
			}
		}
		if t.Failed() || os.Getenv("KEEP_LOGS") != "" {
			keepLogs(t, l.Cluster, l.CP)
		}
		stopping := time.Now()
		if err := l.Close(); err != nil {
			t.Errorf("stopping the cluster: %v", err)
		}
		t.Logf("cluster stopped and removed in %s", time.Since(stopping).Round(time.Millisecond))
	})
	return l
}

// kubectlFor returns kubectl against cp that fails the test on an error, and otherwise
// returns what kubectl printed.
func kubectlFor(t *testing.T, cp *controlplane.ControlPlane) func(stdin []byte, args ...string) string {
	return func(stdin []byte, args ...string) string {
		t.Helper()
		out, err := cp.Kubectl(stdin, args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
}

// waitKubectl runs kubectl with args for as long as they tell it to wait (beyond
// cp.Kubectl's minute, up to 4), failing the test on an error.
func waitKubectl(t *testing.T, cp *controlplane.ControlPlane, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if out, err := cp.KubectlCommand(ctx, args...).CombinedOutput(); err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func lineOf(out, name string) string {
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == name {
			return l
		}
	}
	return ""
}

func podManifest(name, node string, args ...string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = strconv.Quote(a)
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  nodeSelector: {kubernetes.io/hostname: %s}
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: %s
    imagePullPolicy: Never
    args: [%s]
`, name, node, TestClientImage, strings.Join(quoted, ", "))
}

// waitPod waits until pod name is in phase, and returns its IP.
func waitPod(cp *controlplane.ControlPlane, name, phase string, timeout time.Duration) (netip.Addr, error) {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		out, err := cp.Kubectl(nil, "get", "pod", name, "-o", "json")
		if err == nil {
			var pod struct {
				Status struct {
					Phase      string `json:"phase"`
					PodIP      string `json:"podIP"`
					Conditions []struct {
						Type, Status, Reason, Message string
					} `json:"conditions"`
					ContainerStatuses []struct {
						State json.RawMessage `json:"state"`
					} `json:"containerStatuses"`
				} `json:"status"`
			}
			if err := json.Unmarshal([]byte(out), &pod); err != nil {
				return netip.Addr{}, err
			}
			last = fmt.Sprintf("phase %s, conditions %+v, containers %+v", pod.Status.Phase, pod.Status.Conditions, pod.Status.ContainerStatuses)
			if pod.Status.Phase == "Failed" && phase != "Failed" {
				return netip.Addr{}, fmt.Errorf("pod %s failed: %s", name, last)
			}
			if pod.Status.Phase == phase {
				if pod.Status.PodIP == "" {
					return netip.Addr{}, nil
				}
				return netip.ParseAddr(pod.Status.PodIP)
			}
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return netip.Addr{}, fmt.Errorf("pod %s not %s within %s: %s", name, phase, timeout, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// keepLogs copies every component's log into a folder that outlives the test.
func keepLogs(t *testing.T, c *Cluster, cp *controlplane.ControlPlane) {
	dir, err := os.MkdirTemp("", "egressgw-realnodes-logs-")
	if err != nil {
		t.Error(err)
		return
	}
	logs := []string{cp.ComponentLog("kube-scheduler"), cp.ComponentLog("kube-controller-manager")}
	for _, n := range c.Nodes {
		logs = append(logs, n.Logs()...)
	}
	for _, l := range logs {
		data, err := os.ReadFile(l)
		if err != nil {
			t.Error(err)
			continue
		}
		name := filepath.Base(l)
		if node := filepath.Base(filepath.Dir(l)); strings.HasPrefix(node, "egw") {
			name = node + "-" + name
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Error(err)
		}
	}
	// The pods' logs, as the kubelets wrote them: kubectl logs cannot reach a node that
	// failed.
	for _, n := range c.Nodes {
		if out, err := exec.Command("cp", "-r", filepath.Join(n.dir, "pod-logs"), filepath.Join(dir, n.Name+"-pod-logs")).CombinedOutput(); err != nil {
			t.Errorf("copying the pod logs of %s: %v\n%s", n.Name, err, out)
		}
	}
	t.Logf("the components' and the pods' logs are in %s", dir)
}
