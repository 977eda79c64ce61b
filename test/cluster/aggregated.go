package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/egressgw/egressgw/test/controlplane"
	"github.com/egressgw/egressgw/test/topology"
)

// AggregatedPort is where the aggregated API server listens, on the control namespace's
// address: kube-apiserver does not route to loopback endpoints.
const AggregatedPort = 8443

// APIService is the aggregated API's APIService.
const APIService = "v1alpha1.egress.egressgw.io"

// startAggregated registers the aggregated API the way artifacts/apiserver does, with the
// Service's endpoints at the control namespace's address instead of a pod, starts the
// server there, and waits until kube-apiserver calls the APIService Available: it
// reached the server and verified it with the CA bundle the server published.
func (c *Cluster) startAggregated(ctx context.Context) error {
	var svc corev1.Service
	if err := readArtifact("service.yaml", &svc); err != nil {
		return err
	}
	svc.Spec.Selector = nil
	svc.Spec.Ports[0].TargetPort = intstr.FromInt32(AggregatedPort)
	if _, err := c.Kube.CoreV1().Services(svc.Namespace).Create(ctx, &svc, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := c.Kube.DiscoveryV1().EndpointSlices(svc.Namespace).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: svc.Name + "-netns", Namespace: svc.Namespace,
			Labels: map[string]string{discoveryv1.LabelServiceName: svc.Name, discoveryv1.LabelManagedBy: "egressgw-test"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{topology.ControlIP.String()}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To[int32](AggregatedPort)}},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	for _, f := range []string{"apiservice.yaml", "aggregate-roles.yaml"} {
		if _, err := c.Kubectl(nil, "apply", "-f", filepath.Join(controlplane.RepoRoot(), "artifacts", "apiserver", f)); err != nil {
			return err
		}
	}
	p, err := start("apiserver", filepath.Join(c.Logs, "apiserver.log"), nil,
		"ip", "netns", "exec", c.Topo.Control, filepath.Join(c.Bin, "egressgw-apiserver"),
		"--kubeconfig="+c.NodeKubeconfig,
		"--authentication-kubeconfig="+c.NodeKubeconfig, "--authorization-kubeconfig="+c.NodeKubeconfig,
		"--bind-address="+topology.ControlIP.String(), fmt.Sprintf("--secure-port=%d", AggregatedPort),
		"--namespace="+svc.Namespace, "--service-name="+svc.Name, "--apiservice="+APIService,
		"--cluster-cidrs="+topology.Segment.String()+","+ServiceCIDR.String(), "-v=2")
	if err != nil {
		return err
	}
	c.aggregated = p
	deadline := time.Now().Add(2 * time.Minute)
	var last string
	for time.Now().Before(deadline) {
		if !p.Running() {
			return fmt.Errorf("the aggregated API server stopped:\n%s", p.Tail(20))
		}
		out, err := c.Kubectl(nil, "get", "apiservice", APIService, "-o",
			`jsonpath={.status.conditions[?(@.type=="Available")].status} {.status.conditions[?(@.type=="Available")].message}`)
		if last = strings.TrimSpace(out); err == nil && strings.HasPrefix(last, "True") {
			return nil
		}
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("the APIService was not Available within 2 minutes: %q\n%s", last, p.Tail(20))
}

// Aggregated returns the aggregated API server's process.
func (c *Cluster) Aggregated() *Process { return c.aggregated }

func readArtifact(name string, into any) error {
	data, err := os.ReadFile(filepath.Join(controlplane.RepoRoot(), "artifacts", "apiserver", name))
	if err != nil {
		return err
	}
	if err := yaml.UnmarshalStrict(data, into); err != nil {
		return fmt.Errorf("artifacts/apiserver/%s: %w", name, err)
	}
	return nil
}
