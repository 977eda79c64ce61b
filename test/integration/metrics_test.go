package integration

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/egressgw/egressgw/controller"
	"github.com/egressgw/egressgw/test/controlplane"
)

// TestControllerMetricsNeedAToken: the controller's /metrics (which say which node holds
// each floating IP) go over TLS to clients whose token kube-apiserver vouches for and that
// may get /metrics, as artifacts/metrics.yaml's ClusterRole allows; to nobody else. The
// webhook serves its metrics the same way (metricsauth.Filter, unit-tested there).
func TestControllerMetricsNeedAToken(t *testing.T) {
	cp := controlplane.StartForTest(t)
	kube := kubernetes.NewForConfigOrDie(cp.Config)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	token := func(name string, reader bool) string {
		t.Helper()
		if _, err := kube.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if reader {
			if _, err := kube.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "egressgw-metrics-reader"},
				Rules: []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := kube.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
				RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "egressgw-metrics-reader"},
				Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: "default", Name: name}}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		tr, err := kube.CoreV1().ServiceAccounts("default").CreateToken(ctx, name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	prometheus, stranger := token("prometheus", true), token("stranger", false)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c, err := controller.New(cp.Config, controller.Options{Grace: 500 * time.Millisecond, MetricsAddr: addr, ProbeAddr: "0", SeveralInProcess: true})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Start(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	client := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	get := func(token string) (int, string, error) {
		req, err := http.NewRequest(http.MethodGet, "https://"+addr+"/metrics", nil)
		if err != nil {
			return 0, "", err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), err
	}
	// The server is up once the reader gets the metrics.
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body, err := get(prometheus)
		if err == nil && code == http.StatusOK && strings.Contains(body, "egressgw_placement_pass_seconds") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the metrics reader did not get the metrics: %d %v\n%s", code, err, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, tc := range []struct {
		name, token string
		want        int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"a token kube-apiserver never issued", "made-up", http.StatusUnauthorized},
		{"an account without the ClusterRole", stranger, http.StatusForbidden},
	} {
		code, body, err := get(tc.token)
		if err != nil {
			t.Fatal(err)
		}
		if code != tc.want || strings.Contains(body, "egressgw_") {
			t.Errorf("%s: %d %s, want %d and no metrics", tc.name, code, body, tc.want)
		}
	}
}
