package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/egressgw/egressgw/test/cluster"
	"github.com/egressgw/egressgw/test/controlplane"
	"github.com/egressgw/egressgw/test/topology"
)

// The suite's floating IPs, on the node segment. cluster.ExampleFloatingIPs (.100 to .102,
// what `make run` applies too) are left alone, and each test has its own, so a test that
// fails before its cleanup cannot make another test's gateway a duplicate.
var (
	multiGatewayIPs = []string{"198.51.100.111", "198.51.100.112", "198.51.100.113"}
	failoverIP      = "198.51.100.121"
	netpolIP        = "198.51.100.131"
	aggregatedIP    = "198.51.100.141"
	legacyIP        = "198.51.100.151"
	admissionIPs    = []string{"198.51.100.161", "198.51.100.162"}
)

// Every destination the suite steers is one of the external host's addresses.
var (
	externalHost  = netip.PrefixFrom(topology.ExternalIP, 32)
	externalHost2 = netip.PrefixFrom(topology.ExternalIP2, 32)
)

// kubectl runs kubectl as the administrator, with stdin if it is not empty, and fails the
// test if kubectl fails.
func kubectl(t testing.TB, c *cluster.Cluster, stdin string, args ...string) string {
	t.Helper()
	out, err := c.Kubectl(input(stdin), args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// kubectlOutputs runs kubectl and returns both streams: admission's warnings and errors
// are on stderr.
func kubectlOutputs(c *cluster.Cluster, stdin string, args ...string) (stdout, stderr string, err error) {
	return c.CP.KubectlOutputs(input(stdin), args...)
}

func input(stdin string) []byte {
	if stdin == "" {
		return nil
	}
	return []byte(stdin)
}

// getJSON runs `kubectl get args -o json` and decodes the object into v.
func getJSON(c *cluster.Cluster, v any, args ...string) error {
	out, err := c.Kubectl(nil, append([]string{"get"}, append(args, "-o", "json")...)...)
	if err != nil {
		return err
	}
	return json.Unmarshal([]byte(out), v)
}

// apply applies manifest with kubectl, and when the test ends deletes its objects and
// waits until no node holds or is granted any of ips any longer, so the next test's
// placement starts from a cluster without them.
func apply(t testing.TB, c *cluster.Cluster, manifest string, ips ...string) {
	t.Helper()
	// Registered first, so it runs even when the apply fails halfway through a stream.
	t.Cleanup(func() {
		if _, err := c.Kubectl([]byte(manifest), "delete", "--ignore-not-found", "--timeout=60s", "-f", "-"); err != nil {
			t.Errorf("deleting what the test applied: %v", err)
		}
		if err := waitReleased(c, ips, time.Minute); err != nil {
			t.Error(err)
		}
	})
	kubectl(t, c, manifest, "apply", "-f", "-")
}

// waitReleased waits until no NetworkGatewayNode lists any of ips, in its spec (granted)
// or in its status (held).
func waitReleased(c *cluster.Cluster, ips []string, timeout time.Duration) error {
	if len(ips) == 0 {
		return nil
	}
	return eventually(timeout, func() error {
		var list struct {
			Items []networkGatewayNode `json:"items"`
		}
		if err := getJSON(c, &list, "networkgatewaynodes", "-n", "kube-system"); err != nil {
			return err
		}
		for _, n := range list.Items {
			for _, ip := range ips {
				if slices.Contains(n.Spec.FloatingIPs, ip) || slices.Contains(n.Status.FloatingIPs, ip) {
					return fmt.Errorf("node %s still lists %s after its gateway was deleted", n.Metadata.Name, ip)
				}
			}
		}
		return nil
	})
}

// networkGatewayNode is the part of a NetworkGatewayNode the suite reads.
type networkGatewayNode struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		FloatingIPs []string `json:"floatingIPs"`
	} `json:"spec"`
	Status struct {
		FloatingIPs []string `json:"floatingIPs"`
		Interfaces  []struct {
			Name    string   `json:"name"`
			Subnets []string `json:"subnets"`
		} `json:"interfaces"`
	} `json:"status"`
}

// gatewayStatus is the status of a NetworkGatewayGroup or an AnthosNetworkGateway, as the
// spec shows it.
type gatewayStatus struct {
	Nodes       map[string]string `json:"nodes"`
	FloatingIPs map[string]string `json:"floatingIPs"`
}

// getGatewayStatus reads a gateway's status with kubectl; resource is
// networkgatewaygroup or anthosnetworkgateway.
func getGatewayStatus(c *cluster.Cluster, resource, name string) (gatewayStatus, error) {
	var obj struct {
		Status gatewayStatus `json:"status"`
	}
	err := getJSON(c, &obj, resource, name, "-n", "kube-system")
	return obj.Status, err
}

// namespaceYAML is a namespace labelled e2e=<name>, which the suite's policies select.
func namespaceYAML(name string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n  labels:\n    e2e: %s\n", name, name)
}

// gatewayYAML is a NetworkGatewayGroup in kube-system.
func gatewayYAML(name string, ips ...string) string {
	return fmt.Sprintf(`apiVersion: networking.gke.io/v1
kind: NetworkGatewayGroup
metadata:
  namespace: kube-system
  name: %s
spec:
  floatingIPs:
  - %s
`, name, strings.Join(ips, "\n  - "))
}

// policyYAML is a v1 EgressNATPolicy that sends the pods labelled app=<app> of namespace
// ns to dsts through the gateway kube-system/<gateway>, in the spec's layout.
func policyYAML(name, gateway, ns, app string, dsts ...netip.Prefix) string {
	var d strings.Builder
	for _, p := range dsts {
		fmt.Fprintf(&d, "  - cidr: %s\n", p)
	}
	return fmt.Sprintf(`apiVersion: networking.gke.io/v1
kind: EgressNATPolicy
metadata:
  name: %s
spec:
  sources:
  - namespaceSelector:
      matchLabels:
        e2e: %s
    podSelector:
      matchLabels:
        app: %s
  action: SNAT
  destinations:
%s  gatewayRef:
    name: %s
    namespace: kube-system
`, name, ns, app, d.String(), gateway)
}

// policyState is what `kubectl get egressnatpolicy` shows of a policy.
type policyState struct {
	EgressIP, Node, Ready string
}

func getPolicy(c *cluster.Cluster, name string) (policyState, error) {
	out, err := c.Kubectl(nil, "get", "egressnatpolicy", name, "-o",
		`jsonpath={.status.egressIP} {.status.gatewayNode} {.status.conditions[?(@.type=="Ready")].status}`)
	if err != nil {
		return policyState{}, err
	}
	f := strings.Fields(out)
	if len(f) != 3 {
		return policyState{}, fmt.Errorf("EgressNATPolicy %s is not placed yet: %q", name, out)
	}
	return policyState{EgressIP: f[0], Node: f[1], Ready: f[2]}, nil
}

// waitPolicyReady waits until kubectl shows the policy Ready, with its egress IP held by
// a node, and returns what it shows.
func waitPolicyReady(t testing.TB, c *cluster.Cluster, name string) policyState {
	t.Helper()
	var p policyState
	if err := eventually(90*time.Second, func() (err error) {
		if p, err = getPolicy(c, name); err == nil && p.Ready != "True" {
			err = fmt.Errorf("EgressNATPolicy %s is not Ready: %+v", name, p)
		}
		return err
	}); err != nil {
		out, _ := c.Kubectl(nil, "describe", "egressnatpolicy", name)
		t.Fatalf("%v\n%s", err, out)
	}
	return p
}

// addPod starts a pod on node, as the kubelet and the CNI would, and removes it when the
// test ends. The harness stands in for both: there is no kubectl for a network namespace.
func addPod(t testing.TB, c *cluster.Cluster, node, ns, name, app string, extra ...string) *cluster.Pod {
	t.Helper()
	labels := map[string]string{"app": app}
	for i := 0; i+1 < len(extra); i += 2 {
		labels[extra[i]] = extra[i+1]
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := c.AddPod(ctx, node, ns, name, labels)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.RemovePod(ctx, p); err != nil {
			t.Errorf("removing pod %s: %v", p.Name, err)
		}
	})
	return p
}

// otherNode returns a node that is none of not.
func otherNode(t testing.TB, c *cluster.Cluster, not ...string) *topology.Node {
	t.Helper()
	for _, n := range c.Topo.Nodes {
		if !slices.Contains(not, n.Name) {
			return n
		}
	}
	t.Fatalf("every node is one of %v", not)
	return nil
}

// seenAs asks the external host which source it sees the pod's TCP connections and UDP
// datagrams to dst come from.
func seenAs(pod *cluster.Pod, dst netip.Addr) (tcp, udp netip.Addr, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	t, err := pod.WhoTCP(ctx, dst)
	if err != nil {
		return netip.Addr{}, netip.Addr{}, fmt.Errorf("TCP from %s to %s: %w", pod.Name, dst, err)
	}
	u, err := pod.WhoUDP(ctx, dst)
	if err != nil {
		return t.Addr(), netip.Addr{}, fmt.Errorf("UDP from %s to %s: %w", pod.Name, dst, err)
	}
	return t.Addr(), u.Addr(), nil
}

// waitSeenAs waits until the external host sees both the pod's TCP and its UDP to dst
// come from want: a new pod, or a new policy, is programmed within a second or two.
func waitSeenAs(pod *cluster.Pod, dst, want netip.Addr, timeout time.Duration) error {
	return eventually(timeout, func() error {
		tcp, udp, err := seenAs(pod, dst)
		if err != nil {
			return err
		}
		if tcp != want || udp != want {
			return fmt.Errorf("the external host sees %s to %s as %s (TCP) and %s (UDP), want %s", pod.Name, dst, tcp, udp, want)
		}
		return nil
	})
}

// eventually retries f every 200 ms until it succeeds or timeout passes, and returns its
// last error.
func eventually(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s: %w", timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// specFile is the path of one of the spec's manifests, copied verbatim into
// test/testdata/spec (test/integration checks that they are verbatim).
func specFile(name string) string {
	return filepath.Join(controlplane.RepoRoot(), "test", "testdata", "spec", name)
}

// containsAll reports whether s contains every one of subs.
func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
