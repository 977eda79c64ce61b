package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"sync/atomic"
	"testing"
	"time"
)

func selfSigned(t *testing.T, cn string) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{cn}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

type listener struct{ n atomic.Int32 }

func (l *listener) Enqueue() { l.n.Add(1) }

// TestServingCert: what k8s.io/apiserver serves is the Manager's certificate, as a pair
// it can load, and a rotation reaches it without a restart.
func TestServingCert(t *testing.T) {
	var current atomic.Pointer[tls.Certificate]
	s := newServingCert(func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		if c := current.Load(); c != nil {
			return c, nil
		}
		return nil, errors.New("not loaded")
	})
	s.interval = 10 * time.Millisecond
	if err := s.RunOnce(context.Background()); err == nil {
		t.Error("RunOnce before the Manager loaded a certificate did not fail")
	}
	if cert, key := s.CurrentCertKeyContent(); cert != nil || key != nil {
		t.Error("content before any certificate was loaded")
	}

	served := func() string {
		cert, key := s.CurrentCertKeyContent()
		pair, err := tls.X509KeyPair(cert, key)
		if err != nil {
			t.Fatalf("k8s.io/apiserver could not load the pair: %v", err)
		}
		leaf, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf.Subject.CommonName
	}
	current.Store(selfSigned(t, "first"))
	if err := s.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := served(); got != "first" {
		t.Fatalf("serving %q", got)
	}

	l := &listener{}
	s.AddListener(l)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx, 1); close(done) }()
	defer func() { cancel(); <-done }()
	current.Store(selfSigned(t, "rotated"))
	deadline := time.Now().Add(5 * time.Second)
	for l.n.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if l.n.Load() == 0 {
		t.Fatal("the TLS config was not told of the rotation")
	}
	if got := served(); got != "rotated" {
		t.Errorf("serving %q after the rotation", got)
	}
}
