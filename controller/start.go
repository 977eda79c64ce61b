package controller

import (
	"context"
	"errors"
	"net"
	"net/url"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
)

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
// answer yet, rather than that it refused what was asked.
func unreachable(err error) bool {
	var urlErr *url.Error
	var netErr net.Error
	return errors.As(err, &urlErr) || errors.As(err, &netErr) ||
		apierrors.IsServiceUnavailable(err) || apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) || apierrors.IsTooManyRequests(err)
}
