package controller

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
)

// Run validates and completes the options, before anything starts, then runs the
// controller until ctx ends, waiting for the API server if it cannot be reached yet.
func Run(ctx context.Context, o *Options) error {
	if err := o.Validate(); err != nil {
		return err
	}
	if err := o.Complete(); err != nil {
		return err
	}
	ctrl.SetLogger(klog.NewKlogr())
	cfg, err := restConfig(o.Kubeconfig)
	if err != nil {
		return err
	}
	c, err := NewWhenReachable(ctx, cfg, *o)
	if err != nil {
		return err
	}
	return c.Start(ctx)
}

// restConfig loads the kubeconfig as controller-runtime's own --kubeconfig flag did,
// client-side rate limiting off included: a pass writes every status that changed at
// once, and the API server's priority and fairness is what limits it.
func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		return ctrl.GetConfig()
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig}, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig %s: %w", kubeconfig, err)
	}
	if cfg.QPS == 0 {
		cfg.QPS = -1
	}
	return cfg, nil
}

// NewWhenReachable is New, retried while the API server cannot be reached (it is
// restarting, or the network to it is down): creating the manager asks the API server
// for its resources. The controller then starts as soon as the API server is back,
// rather than exiting and waiting for the kubelet's back-off. Any other failure, such as
// a bad flag, returns at once; so does the end of ctx.
func NewWhenReachable(ctx context.Context, cfg *rest.Config, opts Options) (*Controller, error) {
	wait := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		c, err := New(cfg, opts)
		if err == nil || !unreachable(err) {
			return c, err
		}
		klog.ErrorS(err, "The API server cannot be reached; retrying", "host", cfg.Host, "attempt", attempt, "in", wait)
		select {
		case <-ctx.Done():
			return nil, errors.Join(err, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// unreachable says whether err means the API server could not be reached or could not
// answer yet: a connection refused, reset or timed out, an API server that closed it
// while stopping, one that says it is not ready, or one whose discovery does not serve
// our API group yet (a kube-apiserver just restarted serves the CRDs' groups some
// seconds after it is ready; with the CRDs not installed, the retries log why), or a
// connection lost while reading an answer (client-go's "unexpected error when reading
// response body. Please retry"). A request that reached it and was refused is not, nor
// is a certificate the client does not trust: waiting mends neither.
func unreachable(err error) bool {
	var opErr *net.OpError
	var netErr net.Error
	var discoveryErr *discovery.ErrGroupDiscoveryFailed
	var noMatch *meta.NoKindMatchError
	var noResource *meta.NoResourceMatchError
	return errors.As(err, &opErr) || errors.As(err, &netErr) && netErr.Timeout() || utilnet.IsProbableEOF(err) ||
		apierrors.IsServiceUnavailable(err) || apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) || apierrors.IsTooManyRequests(err) ||
		errors.As(err, &discoveryErr) || errors.As(err, &noMatch) || errors.As(err, &noResource) ||
		strings.Contains(err.Error(), "unexpected error when reading response body")
}
