package cluster

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egressgw/egressgw/test/topology"
)

const controlPlaneLabel = "node-role.kubernetes.io/control-plane"

// registerNodes creates a Node object for every topology node, as a kubelet would:
// its address, pod CIDR, role and Ready condition.
func (c *Cluster) registerNodes(ctx context.Context) error {
	for _, n := range c.Topo.Nodes {
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: map[string]string{
				"kubernetes.io/hostname": n.Name, "kubernetes.io/os": "linux",
			}},
			Spec: corev1.NodeSpec{PodCIDR: n.PodCIDR.String(), PodCIDRs: []string{n.PodCIDR.String()}},
		}
		if slices.Contains(c.opts.ControlPlane, n.Index) {
			node.Labels[controlPlaneLabel] = ""
		}
		created, err := c.Kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("registering node %s: %w", n.Name, err)
		}
		created.Status = corev1.NodeStatus{
			Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: n.IP.String()}, {Type: corev1.NodeHostName, Address: n.Name}},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
				Message: "the test harness stands in for the kubelet", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
		}
		if _, err := c.Kube.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("writing the status of node %s: %w", n.Name, err)
		}
	}
	return nil
}

// EnsureNamespace creates a namespace with labels, or sets the labels of an existing one.
func (c *Cluster) EnsureNamespace(ctx context.Context, name string, labels map[string]string) error {
	ns, err := c.Kube.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	if ns.Labels == nil {
		ns.Labels = map[string]string{}
	}
	for k, v := range labels {
		ns.Labels[k] = v
	}
	_, err = c.Kube.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{})
	return err
}

// Pod is a pod in both worlds: a network namespace, and a Pod object.
type Pod struct {
	*topology.Pod
	Namespace string
}

// AddPod creates the pod's network namespace on node, then its Pod object with its IP and
// node, Running, as a kubelet and CNI would report them. The namespace must exist.
func (c *Cluster) AddPod(ctx context.Context, node, namespace, name string, labels map[string]string) (*Pod, error) {
	n := c.Node(node)
	if n == nil {
		return nil, fmt.Errorf("no node %s", node)
	}
	tp, err := c.Topo.AddPod(n, namespace+"/"+name)
	if err != nil {
		return nil, err
	}
	p := &Pod{Pod: tp, Namespace: namespace}
	if err := c.RegisterPod(ctx, p, name, labels); err != nil {
		return nil, err
	}
	return p, nil
}

// RegisterPod creates the Pod object of a pod whose network namespace exists already, as a
// kubelet reports a pod once its sandbox runs. The topology pod's name must be
// namespace/name.
func (c *Cluster) RegisterPod(ctx context.Context, p *Pod, name string, labels map[string]string) error {
	tp, namespace := p.Pod, p.Namespace
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: labels},
		Spec:       corev1.PodSpec{NodeName: tp.Node.Name, Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/none"}}},
	}
	created, err := c.Kube.CoreV1().Pods(namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating pod %s/%s: %w", namespace, name, err)
	}
	created.Status = corev1.PodStatus{
		Phase: corev1.PodRunning, PodIP: tp.IP.String(), PodIPs: []corev1.PodIP{{IP: tp.IP.String()}},
		HostIP: tp.Node.IP.String(), HostIPs: []corev1.HostIP{{IP: tp.Node.IP.String()}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
	}
	if _, err := c.Kube.CoreV1().Pods(namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("writing the status of pod %s/%s: %w", namespace, name, err)
	}
	return nil
}

// RemovePod deletes the Pod object and the pod's network namespace.
func (c *Cluster) RemovePod(ctx context.Context, p *Pod) error {
	name := p.Name[len(p.Namespace)+1:]
	err := c.Kube.CoreV1().Pods(p.Namespace).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return c.Topo.RemovePod(p.Pod)
}
