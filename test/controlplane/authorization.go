package controlplane

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	ourwebhook "github.com/egressgw/egressgw/webhook"
)

// AuthorizeAgentPodReads restarts kube-apiserver with artifacts/webhook's
// authorization-config.yaml in place of its --authorization-mode, as an operator enables
// it, with the kubeconfig it names pointing at this control plane's webhook server and
// trusting the CA that server keeps in its Secret.
func (cp *ControlPlane) AuthorizeAgentPodReads() error {
	kube, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	secret, err := kube.CoreV1().Secrets(WebhookNamespace).Get(ctx, "egressgw-webhook-certs", metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading the webhook's CA: %w", err)
	}
	kubeconfig := filepath.Join(cp.dir, "authorization-kubeconfig.yaml")
	err = clientcmd.WriteToFile(clientcmdapi.Config{
		Clusters: map[string]*clientcmdapi.Cluster{"egressgw-webhook": {
			Server: cp.WebhookURL + ourwebhook.AuthorizationPath, CertificateAuthorityData: secret.Data["ca.crt"]}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"kube-apiserver": {}},
		Contexts:       map[string]*clientcmdapi.Context{"egressgw-webhook": {Cluster: "egressgw-webhook", AuthInfo: "kube-apiserver"}},
		CurrentContext: "egressgw-webhook",
	}, kubeconfig)
	if err != nil {
		return err
	}
	const artifact = "/etc/kubernetes/egressgw/authorization-kubeconfig.yaml"
	data, err := os.ReadFile(filepath.Join(RepoRoot(), "artifacts", "webhook", "authorization-config.yaml"))
	if err != nil {
		return err
	}
	if !strings.Contains(string(data), artifact) {
		return fmt.Errorf("artifacts/webhook/authorization-config.yaml names no %s to replace", artifact)
	}
	config := filepath.Join(cp.dir, "authorization-config.yaml")
	if err := os.WriteFile(config, []byte(strings.ReplaceAll(string(data), artifact, kubeconfig)), 0o600); err != nil {
		return err
	}
	return cp.restartAPIServer(0, func(argv []string) []string {
		var out []string
		for _, arg := range argv {
			if !strings.HasPrefix(arg, "--authorization-mode=") {
				out = append(out, arg)
			}
		}
		return append(out, "--authorization-config="+config)
	})
}
