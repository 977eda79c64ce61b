package controller

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

func TestUnreachable(t *testing.T) {
	dial := &url.Error{Op: "Get", URL: "https://198.51.100.2:6443/api", Err: &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("i/o timeout")}}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("creating the manager: failed to determine if *v1.Lease is namespaced: failed to get restmapping: failed to get server groups: %w", dial), true},
		{apierrors.NewServiceUnavailable("starting"), true},
		{&url.Error{Op: "Get", URL: "https://198.51.100.2:6443/api", Err: io.EOF}, true},
		{&url.Error{Op: "Get", URL: "https://198.51.100.2:6443/api", Err: &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}}, false},
		{apierrors.NewForbidden(schema.GroupResource{Resource: "leases"}, "x", errors.New("no")), false},
		{errors.New("--grace must be positive"), false},
		// A kube-apiserver just restarted: ready, but not serving the CRDs' group yet.
		{fmt.Errorf("creating the manager: failed to determine if *v1.NetworkGatewayNode is namespaced: failed to get restmapping: %w",
			&discovery.ErrGroupDiscoveryFailed{Groups: map[schema.GroupVersion]error{{Group: "networking.gke.io", Version: "v1"}: errors.New("not found")}}), true},
		{fmt.Errorf("restmapping: %w", &meta.NoKindMatchError{GroupKind: schema.GroupKind{Group: "networking.gke.io", Kind: "NetworkGatewayNode"}}), true},
		// A kube-apiserver that stopped while answering (the dataplane suite saw it).
		{fmt.Errorf("creating the manager: failed to determine if *v1.Lease is namespaced: failed to get restmapping: failed to get server groups: %w",
			fmt.Errorf("unexpected error when reading response body. Please retry. Original error: %w", errors.New("http2: client connection lost"))), true},
		// What controller-runtime's REST mapper returned in that case (the chaos suite saw it).
		{fmt.Errorf("creating the manager: failed to determine if *v1.NetworkGatewayNode is namespaced: failed to get restmapping: %w",
			&apiutil.ErrResourceDiscoveryFailed{{Group: "networking.gke.io", Version: "v1"}: apierrors.NewNotFound(schema.GroupResource{}, "")}), true},
	} {
		if got := unreachable(tc.err); got != tc.want {
			t.Errorf("unreachable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestNewWhenReachableRetries: with nothing listening where the API server should be,
// NewWhenReachable keeps trying until its context ends; a bad option fails at once.
func TestNewWhenReachableRetries(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // connections to addr are refused now
	cfg := &rest.Config{Host: "https://" + addr, TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
	opts := Options{Grace: time.Second, MetricsAddr: "0", ProbeAddr: "0", SeveralInProcess: true}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = NewWhenReachable(ctx, cfg, opts)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("NewWhenReachable = %v, want it to retry until the context ends", err)
	}
	if took := time.Since(start); took < time.Second {
		t.Errorf("it gave up after %s, before its context ended", took)
	}
	bad := opts
	bad.LeaderElection = true // with no election timings: a bad flag
	// A retry would wait on the context, which has ended: its error would be joined in.
	done, cancelDone := context.WithCancel(context.Background())
	cancelDone()
	_, err = NewWhenReachable(done, cfg, bad)
	if err == nil || !strings.Contains(err.Error(), "--leader-elect") {
		t.Errorf("NewWhenReachable with bad options = %v, want the flag named", err)
	}
	if errors.Is(err, context.Canceled) {
		t.Errorf("a bad option was retried: %v", err)
	}
}

// TestRunValidatesFirst: a bad flag is reported before the kubeconfig is even read.
func TestRunValidatesFirst(t *testing.T) {
	o := NewOptions()
	o.Kubeconfig = "/nonexistent/kubeconfig"
	o.Election.AckHold = time.Second
	err := Run(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "--heartbeat-hold") || strings.Contains(err.Error(), "kubeconfig") {
		t.Errorf("Run = %v, want the bad --heartbeat-hold and nothing about the kubeconfig", err)
	}
	o.Election.AckHold = time.Minute * 2
	if err := Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), "--kubeconfig /nonexistent/kubeconfig") {
		t.Errorf("Run with valid flags and a missing kubeconfig = %v, want the --kubeconfig named", err)
	}
}
