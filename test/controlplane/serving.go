package controlplane

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// The files envtest would write into kube-apiserver's certificate folder, and does not
// when apiserver.crt is already there.
const (
	servingCertFile      = "apiserver.crt"
	servingKeyFile       = "apiserver.key"
	serviceAccountCert   = "sa-signer.crt"
	kubeletClientCert    = "kubelet-client.crt" // kube-apiserver's, for calls to kubelets
	kubeletClientKey     = "kubelet-client.key"
	kubeletClientCA      = "kubelet-client-ca.crt" // what a kubelet must trust for them
	kubernetesServiceIP  = "10.0.0.1"              // the first address of ServiceCIDR
	servingCertValidity  = 24 * time.Hour
	servingCertNotBefore = time.Hour
)

// writeServingCerts gives kube-apiserver a serving certificate that pods can verify: it
// names, besides localhost and 127.0.0.1, the kubernetes Service's IP (what in-cluster
// clients dial) and advertise, the address published as that Service's endpoint. envtest's
// own names localhost only. It also writes the service-account signing key, which envtest
// writes only together with its certificate, and tells envtest which CA to trust. With
// kubeletClient, kube-apiserver also gets a client certificate of its own CA for its calls
// to kubelets (logs, exec, port-forward), which envtest never configures.
func writeServingCerts(api *envtest.APIServer, dir, advertise string, kubeletClient bool) error {
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.ParseIP(kubernetesServiceIP)}
	if ip := net.ParseIP(advertise); ip != nil {
		ips = append(ips, ip)
	} else {
		return fmt.Errorf("advertise address %q is not an IP", advertise)
	}
	now := time.Now()
	ca, err := newTestCA("kube-apiserver-ca", now.Add(-servingCertNotBefore), now.Add(servingCertValidity))
	if err != nil {
		return err
	}
	if kubeletClient {
		if err := writeKubeletClientCert(api, dir, ca); err != nil {
			return err
		}
	}
	certDER, keyDER, err := ca.issue(x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		IPAddresses: ips,
	})
	if err != nil {
		return err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	saKeyDER, err := x509.MarshalECPrivateKey(saKey)
	if err != nil {
		return err
	}
	saPubDER, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return err
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.der})
	files := map[string][]byte{
		servingCertFile:      pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER}),
		servingKeyFile:       pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		serviceAccountSigner: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: saKeyDER}),
		serviceAccountCert:   pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPubDER}),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return fmt.Errorf("writing kube-apiserver's certificates: %w", err)
		}
	}
	api.CertDir = dir
	api.SecureServing.CA = caPEM
	return nil
}

// writeKubeletClientCert issues kube-apiserver's client certificate for kubelets, as
// kubeadm's apiserver-kubelet-client (user kube-apiserver-kubelet-client, group
// system:masters), and writes it, its key and the CA a kubelet must trust for it.
func writeKubeletClientCert(api *envtest.APIServer, dir string, ca *testCA) error {
	certDER, keyDER, err := ca.issue(x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver-kubelet-client", Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return err
	}
	files := map[string][]byte{
		kubeletClientCert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER}),
		kubeletClientKey:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		kubeletClientCA:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.der}),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return fmt.Errorf("writing kube-apiserver's kubelet client certificate: %w", err)
		}
	}
	api.Configure().Set("kubelet-client-certificate", filepath.Join(dir, kubeletClientCert))
	api.Configure().Set("kubelet-client-key", filepath.Join(dir, kubeletClientKey))
	return nil
}
