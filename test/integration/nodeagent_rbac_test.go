package integration

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	versioned "github.com/egressgw/egressgw/apiserver/client/clientset/versioned"
	"github.com/egressgw/egressgw/test/controlplane"
)

// TestNodeAgentWritesOnlyItsOwnNode applies the agent's RBAC and admission policy from
// artifacts/ and acts as the agent of worker1, the way a pod-bound ServiceAccount token
// presents it: it may write worker1's report and Lease, and nothing of worker2's.
func TestNodeAgentWritesOnlyItsOwnNode(t *testing.T) {
	cp := controlplane.StartForTest(t)
	for _, f := range []string{"rbac.yaml", "node-restriction.yaml"} {
		mustKubectl(t, cp, nil, "apply", "-f", filepath.Join(controlplane.RepoRoot(), "artifacts", "nodeagent", f))
	}
	asAgent := func(node string) *rest.Config {
		cfg := rest.CopyConfig(cp.Config)
		cfg.Impersonate = rest.ImpersonationConfig{
			UserName: "system:serviceaccount:egressgw-system:egressgw-agent",
			Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:egressgw-system", "system:authenticated"},
		}
		if node != "" {
			cfg.Impersonate.Extra = map[string][]string{"authentication.kubernetes.io/node-name": {node}}
		}
		return cfg
	}
	ctx := context.Background()

	// The API server enforces a new policy once its informer has it: wait for a denial,
	// probing with a dry run, which goes through admission and stores nothing.
	eventually(t, 10*time.Second, func() string {
		_, err := kubernetes.NewForConfigOrDie(asAgent("worker1")).CoordinationV1().Leases("kube-system").Create(ctx,
			&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "egressgw-node-probe", Namespace: "kube-system"}}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil {
			return "the admission policy is not enforced yet"
		}
		return ""
	})
	agent := versioned.NewForConfigOrDie(asAgent("worker1")).NetworkingV1().NetworkGatewayNodes("kube-system")
	leases := kubernetes.NewForConfigOrDie(asAgent("worker1")).CoordinationV1().Leases("kube-system")
	admin := versioned.NewForConfigOrDie(cp.Config).NetworkingV1().NetworkGatewayNodes("kube-system")
	if _, err := admin.Create(ctx, &v1.NetworkGatewayNode{ObjectMeta: metav1.ObjectMeta{Name: "worker2", Namespace: "kube-system"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	lease := func(node string) *coordinationv1.Lease {
		return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "egressgw-node-" + node, Namespace: "kube-system"},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(node), LeaseDurationSeconds: ptr.To[int32](3)}}
	}

	tests := []struct {
		name    string
		do      func() error
		wantErr string // empty: allowed
	}{
		{name: "may not create its own report with grants in the spec", wantErr: "may not grant itself floating IPs", do: func() error {
			_, err := agent.Create(ctx, &v1.NetworkGatewayNode{ObjectMeta: metav1.ObjectMeta{Name: "worker1", Namespace: "kube-system"},
				Spec: v1.NetworkGatewayNodeSpec{FloatingIPs: []string{"198.51.100.100"}}}, metav1.CreateOptions{})
			return err
		}},
		{name: "creates its own report", do: func() error {
			_, err := agent.Create(ctx, &v1.NetworkGatewayNode{ObjectMeta: metav1.ObjectMeta{Name: "worker1", Namespace: "kube-system"}}, metav1.CreateOptions{})
			return err
		}},
		{name: "writes its own report's status", do: func() error {
			n, err := agent.Get(ctx, "worker1", metav1.GetOptions{})
			if err != nil {
				return err
			}
			n.Status.FloatingIPs = []string{"198.51.100.100"}
			_, err = agent.UpdateStatus(ctx, n, metav1.UpdateOptions{})
			return err
		}},
		{name: "may not grant itself IPs in the spec", wantErr: "cannot patch resource", do: func() error {
			_, err := agent.Patch(ctx, "worker1", "application/merge-patch+json", []byte(`{"spec":{"floatingIPs":["198.51.100.100"]}}`), metav1.PatchOptions{})
			return err
		}},
		{name: "may not write another node's report", wantErr: "only its own NetworkGatewayNode: worker1, not worker2", do: func() error {
			n, err := agent.Get(ctx, "worker2", metav1.GetOptions{})
			if err != nil {
				return err
			}
			n.Status.FloatingIPs = []string{"198.51.100.100"}
			_, err = agent.UpdateStatus(ctx, n, metav1.UpdateOptions{})
			return err
		}},
		{name: "renews its own Lease", do: func() error {
			_, err := leases.Create(ctx, lease("worker1"), metav1.CreateOptions{})
			return err
		}},
		{name: "may not renew another node's Lease", wantErr: "only its own heartbeat Lease: egressgw-node-worker1", do: func() error {
			_, err := leases.Create(ctx, lease("worker2"), metav1.CreateOptions{})
			return err
		}},
		{name: "watches the controller's leader Lease, which says where heartbeats go", do: func() error {
			leader := kubernetes.NewForConfigOrDie(asAgent("worker1")).CoordinationV1().Leases(controlplane.WebhookNamespace)
			opts := metav1.ListOptions{FieldSelector: "metadata.name=egressgw-controller"}
			if _, err := leader.List(ctx, opts); err != nil {
				return err
			}
			w, err := leader.Watch(ctx, opts)
			if err == nil {
				w.Stop()
			}
			return err
		}},
		{name: "may not list the other Leases of the controller's namespace", wantErr: "forbidden", do: func() error {
			_, err := kubernetes.NewForConfigOrDie(asAgent("worker1")).CoordinationV1().Leases(controlplane.WebhookNamespace).List(ctx, metav1.ListOptions{})
			return err
		}},
		{name: "a token not bound to a pod on a node writes nothing", wantErr: "bound to its pod", do: func() error {
			_, err := kubernetes.NewForConfigOrDie(asAgent("")).CoordinationV1().Leases("kube-system").Create(ctx, lease("worker3"), metav1.CreateOptions{})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantDenied(t, tt.do(), tt.wantErr)
		})
	}
}

// wantDenied fails t unless err is nil and wantErr empty (allowed), or err says wantErr.
func wantDenied(t *testing.T, err error, wantErr string) {
	t.Helper()
	switch {
	case wantErr == "" && err != nil:
		t.Fatalf("denied: %v", err)
	case wantErr != "" && err == nil:
		t.Fatalf("allowed, want denied with %q", wantErr)
	case wantErr != "" && !strings.Contains(err.Error(), wantErr):
		t.Fatalf("denied with %v, want %q", err, wantErr)
	}
}
