package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"sync"
	"time"

	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/klog/v2"
)

// servingCert hands k8s.io/apiserver the certificate package certs serves (its Manager's
// GetCertificate), and tells the server's TLS config when it changes, so a rotation needs
// no restart. k8s.io/apiserver reads certificates as PEM through this interface only.
type servingCert struct {
	get      func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	interval time.Duration

	mu        sync.Mutex
	served    *tls.Certificate
	cert, key []byte
	listeners []dynamiccertificates.Listener
}

var (
	_ dynamiccertificates.CertKeyContentProvider = &servingCert{}
	_ dynamiccertificates.ControllerRunner       = &servingCert{}
)

func newServingCert(get func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *servingCert {
	return &servingCert{get: get, interval: 5 * time.Second}
}

func (s *servingCert) Name() string { return "egressgw-serving-certificate" }

func (s *servingCert) AddListener(l dynamiccertificates.Listener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listeners = append(s.listeners, l)
}

// CurrentCertKeyContent returns the certificate chain and key as PEM; both are empty
// until the Manager has loaded a certificate.
func (s *servingCert) CurrentCertKeyContent() ([]byte, []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cert, s.key
}

// RunOnce loads the Manager's current certificate.
func (s *servingCert) RunOnce(context.Context) error {
	_, err := s.refresh()
	return err
}

// Run polls the Manager until ctx ends: the Manager swaps certificates without telling.
func (s *servingCert) Run(ctx context.Context, _ int) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed, err := s.refresh()
		if err != nil {
			klog.V(2).InfoS("The serving certificate is not loaded yet", "err", err)
			continue
		}
		if changed {
			s.mu.Lock()
			listeners := s.listeners
			s.mu.Unlock()
			for _, l := range listeners {
				l.Enqueue()
			}
		}
	}
}

func (s *servingCert) refresh() (bool, error) {
	c, err := s.get(&tls.ClientHelloInfo{})
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c == s.served {
		return false, nil
	}
	key, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		return false, err
	}
	var chain bytes.Buffer
	for _, der := range c.Certificate {
		_ = pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	s.served, s.cert, s.key = c, chain.Bytes(), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key})
	return true, nil
}
