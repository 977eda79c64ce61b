package standin

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/egressgw/egressgw/apiserver/apis/networking"
	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	versioned "github.com/egressgw/egressgw/apiserver/client/clientset/versioned"
	"github.com/egressgw/egressgw/apiserver/heartbeat"
)

// DefaultLeaseDuration is the heartbeat grant a stand-in asks for unless told otherwise.
const DefaultLeaseDuration = time.Second

// A stand-in stops by itself after this long, should its test never stop it, so that a
// forgotten one cannot keep a node Up in a shared cluster.
const maxLife = 5 * time.Minute

// Agents are the stand-in agents of a set of nodes.
type Agents struct {
	kube  kubernetes.Interface
	net   versioned.Interface
	lease time.Duration

	mu    sync.Mutex
	stops map[string]chan struct{}
	wg    sync.WaitGroup
}

// Option changes how Start plays the agents.
type Option func(*Agents)

// LeaseDuration sets the duration of the heartbeat Leases, DefaultLeaseDuration if not
// given. The stand-ins renew every quarter of it, as the agent does.
func LeaseDuration(d time.Duration) Option { return func(a *Agents) { a.lease = d } }

// Start registers each node (name → its address and prefix length, such as
// 192.168.1.11/24): its Node, its NetworkGatewayNode with that subnet in its status, and
// its heartbeat Lease. Then, until stopped, it renews each Lease and acknowledges each
// grant, as the node's agent would. When the test ends it stops them all and deletes
// what it registered, so a shared cluster is left as it was.
func Start(t testing.TB, cfg *rest.Config, nodes map[string]string, opts ...Option) *Agents {
	t.Helper()
	a := &Agents{lease: DefaultLeaseDuration, stops: map[string]chan struct{}{}}
	for _, o := range opts {
		o(a)
	}
	var err error
	if a.kube, err = kubernetes.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if a.net, err = versioned.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	names := slices.Sorted(maps.Keys(nodes))
	t.Cleanup(func() {
		a.StopAll()
		for _, node := range names {
			if err := a.unregister(node); err != nil {
				t.Errorf("removing stand-in node %s: %v", node, err)
			}
		}
	})
	for _, node := range names {
		if err := a.register(node, nodes[node]); err != nil {
			t.Fatalf("registering stand-in node %s: %v", node, err)
		}
		stop := make(chan struct{})
		a.mu.Lock()
		a.stops[node] = stop
		a.mu.Unlock()
		a.wg.Go(func() { a.run(node, stop) })
	}
	return a
}

// Stop ends the node's heartbeat: to the controller, the node has died. Its objects stay
// until the test ends.
func (a *Agents) Stop(node string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c, ok := a.stops[node]; ok {
		close(c)
		delete(a.stops, node)
	}
}

// StopAll ends every heartbeat and returns once no stand-in writes any more.
func (a *Agents) StopAll() {
	a.mu.Lock()
	for node, c := range a.stops {
		close(c)
		delete(a.stops, node)
	}
	a.mu.Unlock()
	a.wg.Wait()
}

// register writes the node's Node, its NetworkGatewayNode with the subnet and a first
// renewal of its Lease. What exists already, say from a run that was killed, is reused.
func (a *Agents) register(node, subnet string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := a.kube.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating the Node: %w", err)
	}
	ngns := a.net.NetworkingV1().NetworkGatewayNodes(networking.NodeNamespace)
	ngn := &v1.NetworkGatewayNode{ObjectMeta: metav1.ObjectMeta{Name: node, Namespace: networking.NodeNamespace}}
	if _, err := ngns.Create(ctx, ngn, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating the NetworkGatewayNode: %w", err)
	}
	patch := fmt.Appendf(nil, `{"status":{"interfaces":[{"name":"eth0","subnets":[%q]}]}}`, subnet)
	if _, err := ngns.Patch(ctx, node, types.MergePatchType, patch, metav1.PatchOptions{}, "status"); err != nil {
		return fmt.Errorf("reporting subnet %s: %w", subnet, err)
	}
	return a.renew(ctx, node)
}

// unregister deletes what register wrote.
func (a *Agents) unregister(node string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, del := range []func() error{
		func() error {
			return a.kube.CoordinationV1().Leases(networking.NodeNamespace).Delete(ctx, heartbeat.LeaseName(node), metav1.DeleteOptions{})
		},
		func() error {
			return a.net.NetworkingV1().NetworkGatewayNodes(networking.NodeNamespace).Delete(ctx, node, metav1.DeleteOptions{})
		},
		func() error { return a.kube.CoreV1().Nodes().Delete(ctx, node, metav1.DeleteOptions{}) },
	} {
		if err := del(); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
}

// run renews the node's Lease every quarter of its duration and holds exactly what the
// controller grants it, until stop is closed or maxLife has passed.
func (a *Agents) run(node string, stop <-chan struct{}) {
	tick := time.NewTicker(a.lease / 4)
	defer tick.Stop()
	for deadline := time.Now().Add(maxLife); time.Now().Before(deadline); {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), a.lease)
		_ = a.renew(ctx, node) // a failed renewal is retried at the next tick, as the agent does
		a.ackGrants(ctx, node)
		cancel()
	}
}

// renew writes the node's heartbeat Lease as the agent does (heartbeat.StampLease).
// It creates the Lease if there is none.
func (a *Agents) renew(ctx context.Context, node string) error {
	leases := a.kube.CoordinationV1().Leases(networking.NodeNamespace)
	l, err := leases.Get(ctx, heartbeat.LeaseName(node), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		l, err = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: heartbeat.LeaseName(node), Namespace: networking.NodeNamespace}}, nil
	}
	if err != nil {
		return fmt.Errorf("reading the heartbeat Lease: %w", err)
	}
	heartbeat.StampLease(l, node, a.lease)
	if l.ResourceVersion == "" {
		_, err = leases.Create(ctx, l, metav1.CreateOptions{})
	} else {
		_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("renewing the heartbeat Lease: %w", err)
	}
	return nil
}

// ackGrants does what a node agent does with its grants: hold exactly the IPs of its
// NetworkGatewayNode spec, and say so in the status for that generation.
func (a *Agents) ackGrants(ctx context.Context, node string) {
	ngns := a.net.NetworkingV1().NetworkGatewayNodes(networking.NodeNamespace)
	n, err := ngns.Get(ctx, node, metav1.GetOptions{})
	if err != nil || n.Status.ObservedGeneration == n.Generation && slices.Equal(n.Status.FloatingIPs, n.Spec.FloatingIPs) {
		return
	}
	n.Status.FloatingIPs, n.Status.ObservedGeneration = n.Spec.FloatingIPs, n.Generation
	_, _ = ngns.UpdateStatus(ctx, n, metav1.UpdateOptions{})
}
