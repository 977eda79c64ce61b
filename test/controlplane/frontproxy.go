package controlplane

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// FrontProxyUser is the name kube-apiserver's aggregator proves itself with to aggregated
// API servers.
const FrontProxyUser = "front-proxy-client"

// enableAggregation gives kube-apiserver what an aggregated API server needs of it: a
// front-proxy CA and client certificate (published in kube-system's
// extension-apiserver-authentication ConfigMap, which delegated authentication reads),
// the request-header flags, and, with toEndpoints, routing to endpoints rather than Service
// IPs, for a kube-apiserver that no kube-proxy serves.
func enableAggregation(env *envtest.Environment, dir string, toEndpoints bool) error {
	now := time.Now()
	ca, err := newTestCA("front-proxy-ca", now.Add(-time.Hour), now.Add(24*time.Hour))
	if err != nil {
		return err
	}
	clientDER, keyDER, err := ca.issue(x509.Certificate{
		Subject:     pkix.Name{CommonName: FrontProxyUser},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return err
	}
	files := map[string]*pem.Block{
		"front-proxy-ca.crt":     {Type: "CERTIFICATE", Bytes: ca.der},
		"front-proxy-client.crt": {Type: "CERTIFICATE", Bytes: clientDER},
		"front-proxy-client.key": {Type: "EC PRIVATE KEY", Bytes: keyDER},
	}
	for name, block := range files {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			return fmt.Errorf("writing the front-proxy certificates: %w", err)
		}
	}
	args := env.ControlPlane.GetAPIServer().Configure()
	args.Set("requestheader-client-ca-file", filepath.Join(dir, "front-proxy-ca.crt"))
	args.Set("requestheader-allowed-names", FrontProxyUser)
	args.Set("requestheader-username-headers", "X-Remote-User")
	args.Set("requestheader-group-headers", "X-Remote-Group")
	args.Set("requestheader-extra-headers-prefix", "X-Remote-Extra-")
	args.Set("proxy-client-cert-file", filepath.Join(dir, "front-proxy-client.crt"))
	args.Set("proxy-client-key-file", filepath.Join(dir, "front-proxy-client.key"))
	if toEndpoints {
		args.Set("enable-aggregator-routing", "true")
	}
	return nil
}
