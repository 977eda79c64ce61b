package integration

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/egressgw/egressgw/test/controlplane"
)

// TestNodeAgentReadsOnlyItsOwnNodesPods runs kube-apiserver with the authorization
// config of artifacts/webhook, pointing at the webhook server, and reads pods with a
// token bound to the agent's pod on node1, as kubelet mounts it: the agent lists and
// watches node1's pods, and nothing else. Without the config, RBAC alone lets the same
// token list node2's pods.
func TestNodeAgentReadsOnlyItsOwnNodesPods(t *testing.T) {
	cp := controlplane.StartForTest(t)
	mustKubectl(t, cp, nil, "apply", "-f", filepath.Join(controlplane.RepoRoot(), "artifacts", "nodeagent", "rbac.yaml"))
	for _, node := range []string{"node1", "node2"} {
		mustKubectl(t, cp, []byte(`{"apiVersion": "v1", "kind": "Pod",
			"metadata": {"name": "egressgw-agent-`+node+`", "namespace": "egressgw-system"},
			"spec": {"serviceAccountName": "egressgw-agent", "nodeName": "`+node+`", "containers": [{"name": "agent", "image": "egressgw/egressgw-agent:dev"}]}}`),
			"create", "-f", "-")
	}
	bound := strings.TrimSpace(mustKubectl(t, cp, nil, "create", "token", "egressgw-agent", "-n", "egressgw-system",
		"--bound-object-kind=Pod", "--bound-object-name=egressgw-agent-node1"))
	unbound := strings.TrimSpace(mustKubectl(t, cp, nil, "create", "token", "egressgw-agent", "-n", "egressgw-system"))
	asAgent := agentKubectl(t, cp)

	// RBAC alone: the agent's ClusterRole grants every pod, so this test can fail.
	if out, err := asAgent(bound, "get", "pods", "-A", "--field-selector=spec.nodeName=node2", "-o", "name"); err != nil || !strings.Contains(out, "egressgw-agent-node2") {
		t.Fatalf("without the authorization config, RBAC should let the agent list node2's pods: %q, %v", out, err)
	}

	mustKubectl(t, cp, []byte(`{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node1"}}`), "create", "-f", "-")
	if err := cp.AuthorizeAgentPodReads(); err != nil {
		t.Fatal(err)
	}
	agent := func(token string) kubernetes.Interface {
		cfg := rest.AnonymousClientConfig(cp.Config)
		cfg.BearerToken = token
		return kubernetes.NewForConfigOrDie(cfg)
	}
	ctx := context.Background()
	tests := []struct {
		name    string
		do      func() (string, error)
		want    string // in the output, when allowed
		wantErr string // empty: allowed
	}{
		{name: "lists its own node's pods with kubectl", want: "egressgw-agent-node1", do: func() (string, error) {
			return asAgent(bound, "get", "pods", "-A", "--field-selector=spec.nodeName=node1", "-o", "name")
		}},
		{name: "watches its own node's pods, as its informer does", do: func() (string, error) {
			w, err := agent(bound).CoreV1().Pods("").Watch(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=node1"})
			if err == nil {
				w.Stop()
			}
			return "", err
		}},
		{name: "may not list every pod", wantErr: "may list only its own node's pods: add the field selector spec.nodeName=node1 (this request has no field selector)", do: func() (string, error) {
			return asAgent(bound, "get", "pods", "-A")
		}},
		{name: "may not list another node's pods", wantErr: "add the field selector spec.nodeName=node1 (this request has the field selector spec.nodeName=node2)", do: func() (string, error) {
			return asAgent(bound, "get", "pods", "-A", "--field-selector=spec.nodeName=node2")
		}},
		{name: "may not watch every pod", wantErr: "may watch only its own node's pods", do: func() (string, error) {
			_, err := agent(bound).CoreV1().Pods("").Watch(ctx, metav1.ListOptions{})
			return "", err
		}},
		{name: "may not get a pod by name, even its own", wantErr: "may not get pods by name", do: func() (string, error) {
			_, err := agent(bound).CoreV1().Pods("egressgw-system").Get(ctx, "egressgw-agent-node1", metav1.GetOptions{})
			return "", err
		}},
		{name: "a token bound to no pod reads no pods", wantErr: "a ServiceAccount token bound to its pod", do: func() (string, error) {
			return asAgent(unbound, "get", "pods", "-A", "--field-selector=spec.nodeName=node1")
		}},
		{name: "its other reads are RBAC's to decide", want: "node/node1", do: func() (string, error) {
			return asAgent(bound, "get", "nodes", "-o", "name")
		}},
		{name: "other users still list every pod", want: "egressgw-agent-node2", do: func() (string, error) {
			return cp.Kubectl(nil, "get", "pods", "-A", "-o", "name")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := tt.do()
			wantDenied(t, err, tt.wantErr)
			if tt.wantErr != "" && !strings.Contains(strings.ToLower(err.Error()), "forbidden") {
				t.Errorf("denied with %v, want a 403", err)
			}
			if !strings.Contains(out, tt.want) {
				t.Errorf("output %q, want it to hold %q", out, tt.want)
			}
		})
	}
}

// agentKubectl returns a runner of kubectl that presents a token (kubectl --token), and
// no client certificate: a kubeconfig of this control plane's server with no user.
func agentKubectl(t *testing.T, cp *controlplane.ControlPlane) func(token string, args ...string) (string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	err := clientcmd.WriteToFile(clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"test": {Server: cp.Config.Host, CertificateAuthorityData: cp.Config.CAData}},
		Contexts:       map[string]*clientcmdapi.Context{"test": {Cluster: "test"}},
		CurrentContext: "test",
	}, path)
	if err != nil {
		t.Fatal(err)
	}
	return func(token string, args ...string) (string, error) {
		cmd := exec.Command(filepath.Join(cp.Assets, "kubectl"), append([]string{"--kubeconfig", path, "--token", token}, args...)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return string(out), &controlplane.KubectlError{Args: args, Stderr: stderr.String(), Err: err}
		}
		return string(out), nil
	}
}
