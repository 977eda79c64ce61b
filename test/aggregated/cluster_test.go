package aggregated

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/test/controlplane"
)

// The spec's example, on three nodes with no kubelet: the objects are written as the
// scheduler, kubelets, controller and node agents would write them.
var (
	floatingIPs = []string{"198.51.100.100", "198.51.100.101", "198.51.100.102"}
	placed      = map[string]string{"198.51.100.100": "node2", "198.51.100.101": "node1", "198.51.100.102": "node3"}
)

func (e *env) createNode(t testing.TB, i int) {
	t.Helper()
	ctx := context.Background()
	n, err := e.kube.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node%d", i)},
		Spec:       corev1.NodeSpec{PodCIDR: fmt.Sprintf("198.18.%d.0/24", i)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("198.51.100.%d", 10+i)}}
	if _, err := e.kube.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (e *env) createNamespace(t testing.TB, name string, labels map[string]string) {
	t.Helper()
	if _, err := e.kube.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// createPod creates a pod bound to node, then writes the IP a kubelet would report.
func (e *env) createPod(t testing.TB, namespace, name, node, ip string, labels map[string]string) {
	t.Helper()
	if err := e.writePod(namespace, name, node, ip, labels); err != nil {
		t.Fatal(err)
	}
}

func (e *env) writePod(namespace, name, node, ip string, labels map[string]string) error {
	ctx := context.Background()
	p, err := e.kube.CoreV1().Pods(namespace).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10",
			Ports: []corev1.ContainerPort{{Name: "https", ContainerPort: 443}}}}},
	}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	p.Status.Phase = corev1.PodRunning
	p.Status.PodIP, p.Status.PodIPs = ip, []corev1.PodIP{{IP: ip}}
	_, err = e.kube.CoreV1().Pods(namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	return err
}

// createGateway writes kube-system/default with its floating IPs placed as the controller
// would, and node2's agent reporting the first.
func (e *env) createGateway(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	g, err := e.net.NetworkingV1().NetworkGatewayGroups("kube-system").Create(ctx, &v1.NetworkGatewayGroup{
		ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "kube-system"},
		Spec:       v1.NetworkGatewayGroupSpec{FloatingIPs: floatingIPs},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g.Status.FloatingIPs = placed
	g.Status.Nodes = map[string]v1.NodeState{"node1": v1.NodeUp, "node2": v1.NodeUp, "node3": v1.NodeUp}
	if _, err := e.net.NetworkingV1().NetworkGatewayGroups("kube-system").UpdateStatus(ctx, g, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.report(t, "node2", "198.51.100.100")
}

// report writes what a node's agent reports configured.
func (e *env) report(t testing.TB, node string, ips ...string) {
	t.Helper()
	ctx := context.Background()
	nodes := e.net.NetworkingV1().NetworkGatewayNodes("kube-system")
	n, err := nodes.Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		if n, err = nodes.Create(ctx, &v1.NetworkGatewayNode{ObjectMeta: metav1.ObjectMeta{Name: node, Namespace: "kube-system"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	n.Status.FloatingIPs = ips
	if _, err := nodes.UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// specExample writes the spec's example: alice's and paul's role=frontend pods to
// 8.8.8.0/24 through kube-system/default, the policy applied verbatim from the spec.
func (e *env) specExample(t testing.TB) {
	t.Helper()
	for i := 1; i <= 3; i++ {
		e.createNode(t, i)
	}
	e.createNamespace(t, "alice", map[string]string{"user": "alice"})
	e.createNamespace(t, "paul", map[string]string{"user": "paul"})
	e.createNamespace(t, "bob", map[string]string{"user": "bob"})
	e.createGateway(t)
	mustKubectl(t, e.cp, nil, "apply", "-f", filepath.Join(controlplane.RepoRoot(), "test", "testdata", "spec", "v1-egressnatpolicy.yaml"))
	frontend := map[string]string{"role": "frontend"}
	e.createPod(t, "alice", "frontend", "node1", "198.18.1.10", frontend)
	e.createPod(t, "alice", "backend", "node1", "198.18.1.11", map[string]string{"role": "backend"})
	e.createPod(t, "paul", "frontend", "node3", "198.18.3.10", frontend)
	e.createPod(t, "bob", "frontend", "node3", "198.18.3.11", frontend)
}
