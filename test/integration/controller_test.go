package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	versioned "github.com/egressgw/egressgw/apiserver/client/clientset/versioned"
	"github.com/egressgw/egressgw/controller"
	"github.com/egressgw/egressgw/test/controlplane"
	"github.com/egressgw/egressgw/test/standin"
)

// TestController runs the controller against a real kube-apiserver, with the test playing
// two node agents: each reports its subnet and renews its heartbeat Lease.
func TestController(t *testing.T) {
	cp := controlplane.StartForTest(t)
	startController(t, cp)

	agents := standin.Start(t, cp.Config, twoWorkers)
	defer applySpec(t, cp, "v1-networkgatewaygroup-status.yaml")()
	defer applySpec(t, cp, "v1-egressnatpolicy.yaml")()

	t.Run("the spec's two-node example gives the spec's status", func(t *testing.T) {
		want := `{"nodes":{"worker1":"Up","worker2":"Up"},"floatingIPs":{"192.168.1.100":"worker1","192.168.1.101":"worker2","192.168.1.102":"worker1"}}`
		eventually(t, 20*time.Second, func() string {
			return diffStatus(gatewayStatus(t, cp, "default"), want)
		})
		eventually(t, 10*time.Second, func() string {
			return expectContains(mustKubectl(t, cp, nil, "get", "enp", "egress"), "192.168.1.100", "worker1", "True")
		})
	})

	// Each IP's standby is the node other than its holder; worker1's go to it on failover.
	standbys := map[string]string{"192.168.1.100": "worker2", "192.168.1.101": "worker1", "192.168.1.102": "worker2"}
	t.Run("each IP names the other worker as its standby", func(t *testing.T) {
		eventually(t, 10*time.Second, func() string {
			return diffMap(standbysOf(t, cp, "default"), standbys)
		})
	})

	t.Run("a node that stops renewing is Down, and its IPs and policies move", func(t *testing.T) {
		start := time.Now()
		agents.Stop("worker1")
		want := `{"nodes":{"worker1":"Down","worker2":"Up"},"floatingIPs":{"192.168.1.100":"worker2","192.168.1.101":"worker2","192.168.1.102":"worker2"}}`
		eventually(t, 20*time.Second, func() string {
			return diffStatus(gatewayStatus(t, cp, "default"), want)
		})
		for _, ip := range []string{"192.168.1.100", "192.168.1.102"} {
			if placed := gatewayStatus(t, cp, "default")["floatingIPs"].(map[string]any)[ip]; placed != standbys[ip] {
				t.Errorf("%s failed over to %v, not to its standby %s", ip, placed, standbys[ip])
			}
		}
		// worker2 is the only node left: no IP has a standby.
		eventually(t, 10*time.Second, func() string { return diffMap(standbysOf(t, cp, "default"), nil) })
		t.Logf("failover seen through the API %s after the last heartbeat stopped (lease 1 s + grace 0.5 s)", time.Since(start).Round(10*time.Millisecond))
		eventually(t, 10*time.Second, func() string {
			return expectContains(mustKubectl(t, cp, nil, "describe", "enp", "egress"), "EgressIPMoved", "egress IP 192.168.1.100 moved from node worker1 to node worker2")
		})
		eventually(t, 10*time.Second, func() string {
			return expectContains(mustKubectl(t, cp, nil, "describe", "ngg", "default", "-n", "kube-system"),
				"FloatingIPMoved", "192.168.1.100, 192.168.1.102 moved from node worker1 to node worker2 (NodeDown)")
		})
	})

	t.Run("a legacy egressSourceIP no node holds gives UnknownEgressIP", func(t *testing.T) {
		mustKubectl(t, cp, []byte("apiVersion: networking.gke.io/v1alpha1\nkind: AnthosNetworkGateway\nmetadata: {name: far, namespace: kube-system}\nspec:\n  floatingIPs: [192.168.7.100]\n"), "apply", "-f", "-")
		mustKubectl(t, cp, []byte(legacyPolicy("legacy", "192.168.7.100")), "apply", "-f", "-")
		eventually(t, 10*time.Second, func() string {
			return expectContains(mustKubectl(t, cp, nil, "describe", "egressnatpolicy", "legacy"),
				"UnknownEgressIP", "egress IP 192.168.7.100 is assigned to no node")
		})
		eventually(t, 10*time.Second, func() string {
			return expectContains(mustKubectl(t, cp, nil, "describe", "ang", "far", "-n", "kube-system"),
				"NoNodeForFloatingIP", "no node has a subnet containing 192.168.7.100")
		})
	})

	t.Run("a policy whose gateway is deleted gives GatewayNotFound and is not Ready", func(t *testing.T) {
		mustKubectl(t, cp, []byte("apiVersion: networking.gke.io/v1\nkind: NetworkGatewayGroup\nmetadata: {name: short-lived, namespace: kube-system}\nspec:\n  floatingIPs: [192.168.1.110]\n"), "apply", "-f", "-")
		mustKubectl(t, cp, []byte(`apiVersion: networking.gke.io/v1
kind: EgressNATPolicy
metadata: {name: orphan}
spec:
  sources: [{podSelector: {matchLabels: {app: orphan}}}]
  action: SNAT
  destinations: [{cidr: 203.0.113.0/24}]
  gatewayRef: {name: short-lived, namespace: kube-system}
`), "apply", "-f", "-")
		eventually(t, 10*time.Second, func() string {
			return expectContains(mustKubectl(t, cp, nil, "get", "enp", "orphan"), "192.168.1.110", "True")
		})
		mustKubectl(t, cp, nil, "delete", "ngg", "short-lived", "-n", "kube-system")
		eventually(t, 10*time.Second, func() string {
			return expectContains(mustKubectl(t, cp, nil, "describe", "enp", "orphan"),
				"GatewayNotFound", "NetworkGatewayGroup kube-system/short-lived does not exist")
		})
		if ready := mustKubectl(t, cp, nil, "get", "enp", "orphan", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`); ready != "False" {
			t.Errorf("Ready is %q after its gateway was deleted, want False", ready)
		}
	})
}

// twoWorkers are the spec's two nodes, on the spec's segment, played by standin.
var twoWorkers = map[string]string{"worker1": "192.168.1.11/24", "worker2": "192.168.1.12/24"}

// startController runs a controller until the test ends.
func startController(t *testing.T, cp *controlplane.ControlPlane) {
	t.Helper()
	startReplica(t, cp, false)
}

// startReplica runs a controller, with leader election if elect, until the test ends or
// the returned stop is called. elected is closed when it leads.
func startReplica(t *testing.T, cp *controlplane.ControlPlane, elect bool) (elected <-chan struct{}, stop func()) {
	t.Helper()
	return startReplicaAs(t, cp.Config, elect)
}

// startReplicaAs is startReplica with the given client configuration.
func startReplicaAs(t *testing.T, cfg *rest.Config, elect bool) (elected <-chan struct{}, stop func()) {
	t.Helper()
	mgr, err := controller.New(cfg, controller.Options{
		Grace: 500 * time.Millisecond, MetricsAddr: "0", ProbeAddr: "0",
		LeaderElection: elect, SeveralInProcess: true,
		Election: controller.ElectionOptions{Namespace: controlplane.WebhookNamespace,
			LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second, AckHold: 90 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("controller: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return mgr.Elected(), stop
}

// TestLeaderChangeMovesNothing runs two replicas with leader election, stops the leader,
// and checks that no IP moves while the other takes over, and that the new leader acts.
// The replicas run as the controller's ServiceAccount with the RBAC of artifacts/, so the
// least-privilege rules are proven enough.
func TestLeaderChangeMovesNothing(t *testing.T) {
	cp := controlplane.StartForTest(t)
	mustKubectl(t, cp, nil, "apply", "-f", filepath.Join(controlplane.RepoRoot(), "artifacts", "controller", "rbac.yaml"))
	asController := rest.CopyConfig(cp.Config)
	asController.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:egressgw-system:egressgw-controller"}
	agents := standin.Start(t, cp.Config, twoWorkers)
	firstElected, stopFirst := startReplicaAs(t, asController, true)
	<-firstElected // the first replica leads before the second exists
	secondElected, _ := startReplicaAs(t, asController, true)
	mustKubectl(t, cp, nil, "apply", "-f", filepath.Join(controlplane.RepoRoot(), "test", "testdata", "multi-gateway.yaml"))
	placed := `{"nodes":{"worker1":"Up","worker2":"Up"},"floatingIPs":{"192.168.1.100":"worker1"}}`
	eventually(t, 20*time.Second, func() string { return diffStatus(gatewayStatus(t, cp, "gateway1"), placed) })
	before := mustKubectl(t, cp, nil, "get", "ngg", "-n", "kube-system", "-o", "jsonpath={.items[*].status.floatingIPs}")

	stopFirst()
	select {
	case <-secondElected:
	case <-time.After(30 * time.Second):
		t.Fatal("the second replica did not take over in 30 s")
	}
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if now := mustKubectl(t, cp, nil, "get", "ngg", "-n", "kube-system", "-o", "jsonpath={.items[*].status.floatingIPs}"); now != before {
			t.Fatalf("placement changed across the leader change:\nbefore %s\nafter  %s", before, now)
		}
	}
	if out := mustKubectl(t, cp, nil, "get", "events", "-n", "kube-system", "--field-selector=reason=FloatingIPMoved"); strings.Contains(out, "FloatingIPMoved") {
		t.Errorf("IPs moved across the leader change:\n%s", out)
	}
	agents.Stop("worker1")
	eventually(t, 20*time.Second, func() string {
		return diffStatus(gatewayStatus(t, cp, "gateway1"), `{"nodes":{"worker1":"Down","worker2":"Up"},"floatingIPs":{"192.168.1.100":"worker2"}}`)
	})
}

// TestControllerPlacement covers the spec's multi-gateway example, a cordoned node, and a
// duplicate IP that slipped past admission (here: with admission off, as two racing
// requests can).
func TestControllerPlacement(t *testing.T) {
	cp := controlplane.StartForTestWith(t, controlplane.Options{NoAdmission: true})
	startController(t, cp)
	standin.Start(t, cp.Config, twoWorkers)
	mustKubectl(t, cp, nil, "apply", "-f", filepath.Join(controlplane.RepoRoot(), "test", "testdata", "multi-gateway.yaml"))

	t.Run("the spec's multi-gateway example: each policy gets its own IP", func(t *testing.T) {
		for i, want := range []string{"192.168.1.100", "192.168.1.101", "192.168.1.102"} {
			policy := fmt.Sprintf("egress%d", i+1)
			eventually(t, 20*time.Second, func() string {
				obj := getJSON(t, cp, "egressnatpolicies.v1.networking.gke.io", map[string]any{"metadata": map[string]any{"name": policy}})
				status, _ := obj["status"].(map[string]any)
				if status["egressIP"] != want || status["gatewayNode"] == nil || status["gatewayNode"] == "" {
					return fmt.Sprintf("%s status %v, want egressIP %s on a node", policy, status, want)
				}
				return ""
			})
		}
		// gateway1..3 hold one IP each: the first two go to different workers.
		eventually(t, 10*time.Second, func() string {
			return diffStatus(gatewayStatus(t, cp, "gateway1"), `{"nodes":{"worker1":"Up","worker2":"Up"},"floatingIPs":{"192.168.1.100":"worker1"}}`) +
				diffStatus(gatewayStatus(t, cp, "gateway2"), `{"nodes":{"worker1":"Up","worker2":"Up"},"floatingIPs":{"192.168.1.101":"worker2"}}`)
		})
	})

	t.Run("a cordoned node hands its IPs over, letting go before the next node is granted", func(t *testing.T) {
		// Every change to the node reports, in the API server's order.
		ngns := versioned.NewForConfigOrDie(cp.Config).NetworkingV1().NetworkGatewayNodes(controller.NodeReportNamespace)
		w, err := ngns.Watch(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		mustKubectl(t, cp, nil, "cordon", "worker1")
		defer mustKubectl(t, cp, nil, "uncordon", "worker1")
		eventually(t, 10*time.Second, func() string {
			return diffStatus(gatewayStatus(t, cp, "gateway1"), `{"nodes":{"worker1":"Up","worker2":"Up"},"floatingIPs":{"192.168.1.100":"worker2"}}`)
		})
		// worker2 is granted 192.168.1.100 only after worker1 said, for its newest spec,
		// that it no longer holds it.
		released := false
		for deadline := time.After(5 * time.Second); ; {
			select {
			case <-deadline:
				t.Fatal("worker2 was never granted 192.168.1.100 in the watch stream")
			case ev := <-w.ResultChan():
				n, ok := ev.Object.(*v1.NetworkGatewayNode)
				if !ok {
					continue
				}
				switch {
				case n.Name == "worker1" && n.Status.ObservedGeneration == n.Generation && !slices.Contains(n.Status.FloatingIPs, "192.168.1.100"):
					released = true
				case n.Name == "worker2" && slices.Contains(n.Spec.FloatingIPs, "192.168.1.100"):
					if !released {
						t.Fatalf("worker2 was granted 192.168.1.100 before worker1 let go of it")
					}
					goto granted
				}
			}
		}
	granted:
		eventually(t, 10*time.Second, func() string {
			return expectContains(mustKubectl(t, cp, nil, "describe", "ngg", "gateway1", "-n", "kube-system"), "moved from node worker1 to node worker2 (NodeCordoned)")
		})
	})

	t.Run("a duplicate IP is reported on the newer gateway; the older keeps working", func(t *testing.T) {
		mustKubectl(t, cp, []byte("apiVersion: networking.gke.io/v1\nkind: NetworkGatewayGroup\nmetadata: {name: late, namespace: kube-system}\nspec:\n  floatingIPs: [192.168.1.101]\n"), "apply", "-f", "-")
		eventually(t, 10*time.Second, func() string {
			return expectContains(mustKubectl(t, cp, nil, "describe", "ngg", "late", "-n", "kube-system"),
				"FloatingIPConflict", "192.168.1.101 is already used by NetworkGatewayGroup kube-system/gateway2, which is older and keeps it")
		})
		obj := getJSON(t, cp, "networkgatewaygroups.v1.networking.gke.io", map[string]any{"metadata": map[string]any{"name": "late", "namespace": "kube-system"}})
		if out, _ := json.Marshal(obj["status"]); !strings.Contains(string(out), `"status":"False"`) || strings.Contains(string(out), `"192.168.1.101":"worker`) {
			t.Errorf("the newer gateway's status should be not Ready and place nothing: %s", out)
		}
		if diff := diffStatus(gatewayStatus(t, cp, "gateway2"), `{"nodes":{"worker1":"Up","worker2":"Up"},"floatingIPs":{"192.168.1.101":"worker2"}}`); diff != "" {
			t.Errorf("the older gateway changed: %s", diff)
		}
	})
}

func gatewayStatus(t *testing.T, cp *controlplane.ControlPlane, name string) map[string]any {
	t.Helper()
	obj := getJSON(t, cp, "networkgatewaygroups.v1.networking.gke.io", map[string]any{"metadata": map[string]any{"name": name, "namespace": "kube-system"}})
	status, _ := obj["status"].(map[string]any)
	return status
}

// diffStatus compares status.nodes and status.floatingIPs with want, given as JSON.
func diffStatus(got map[string]any, want string) string {
	var w map[string]any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		return err.Error()
	}
	return subsetDiff(w, map[string]any{"nodes": got["nodes"], "floatingIPs": got["floatingIPs"]}) +
		subsetDiff(map[string]any{"nodes": got["nodes"], "floatingIPs": got["floatingIPs"]}, w)
}

// standbysOf is a gateway's status.standbys as kubectl's jsonpath prints it.
func standbysOf(t *testing.T, cp *controlplane.ControlPlane, name string) map[string]string {
	t.Helper()
	out := mustKubectl(t, cp, nil, "get", "networkgatewaygroup", name, "-n", "kube-system", "-o", "jsonpath={.status.standbys}")
	var m map[string]string
	if strings.TrimSpace(out) != "" {
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("status.standbys %q: %v", out, err)
		}
	}
	return m
}

func diffMap(got, want map[string]string) string {
	if maps.Equal(got, want) {
		return ""
	}
	return fmt.Sprintf("got %v, want %v", got, want)
}

func expectContains(out string, wants ...string) string {
	for _, w := range wants {
		if !strings.Contains(out, w) {
			return "no " + w + " in:\n" + out
		}
	}
	return ""
}

// eventually retries check, which returns "" when satisfied, until the timeout.
func eventually(t *testing.T, timeout time.Duration, check func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msg := check()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", timeout, msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
