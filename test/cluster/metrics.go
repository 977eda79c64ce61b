package cluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/egressgw/egressgw/test/controlplane"
	"github.com/egressgw/egressgw/test/topology"
)

// AgentMetricsPort is where every node's agent serves /metrics, over TLS, to clients that
// may get /metrics.
const AgentMetricsPort = 9465

// MetricsReader is the ClusterRole that artifacts/metrics-reader.yaml gives a Prometheus:
// get /metrics of every component.
const MetricsReader = "egressgw-metrics-reader"

// AgentMetrics reads node n's agent's /metrics as a Prometheus would: over TLS (the
// agent's certificate is its own, self-signed, so a scraper pins nothing), with the token
// of a ServiceAccount bound to the metrics-reader ClusterRole.
func (c *Cluster) AgentMetrics(n *topology.Node) ([]byte, error) {
	token, err := c.metricsToken()
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("https://%s:%d/metrics", n.IP, AgentMetricsPort), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.metricsClient().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET /metrics of %s's agent: %s: %s", n.Name, resp.Status, body)
	}
	return body, err
}

func (c *Cluster) metricsClient() *http.Client {
	return &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the agent's certificate is self-signed
	}}
}

// metricsToken is a token of the ServiceAccount egressgw-system/metrics-reader, which the
// MetricsReader ClusterRole binds; made once per cluster.
func (c *Cluster) metricsToken() (string, error) {
	c.metricsOnce.Do(func() { c.metricsTok, c.metricsErr = c.makeMetricsToken() })
	return c.metricsTok, c.metricsErr
}

func (c *Cluster) makeMetricsToken() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns := controlplane.WebhookNamespace
	objects := []func() error{
		func() error {
			_, err := c.Kube.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: MetricsReader},
				Rules: []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := c.Kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "metrics-reader"}}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := c.Kube.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "metrics-reader"},
				RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: MetricsReader},
				Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: "metrics-reader"}}}, metav1.CreateOptions{})
			return err
		},
	}
	for _, create := range objects {
		if err := create(); err != nil && !apierrors.IsAlreadyExists(err) {
			return "", fmt.Errorf("setting up a metrics reader: %w", err)
		}
	}
	tr, err := c.Kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "metrics-reader",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](24 * 3600)}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("a token of the metrics reader: %w", err)
	}
	return tr.Status.Token, nil
}
