package certs

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// Run keeps the certificates current until ctx ends. It ensures at once, then again every
// CheckInterval, whenever the Secret changes (another replica rotated, or someone deleted
// it), and when a waiting move to a new CA falls due. Errors are retried with capped
// exponential backoff, forever: losing the API server for a while must not stop the
// webhook from serving the certificate it has. It returns nil when ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	changed := make(chan struct{}, 1)
	go m.watchSecret(ctx, changed)

	retry := newBackoff()
	for {
		next := m.interval
		if err := m.Ensure(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			next = retry.Step()
			klog.ErrorS(err, "Could not bring the webhook certificates up to date; will retry", "secret", m.secretRef(), "retryIn", next)
		} else {
			retry = newBackoff()
			if at := m.nextSwitch(); !at.IsZero() {
				next = min(next, max(at.Sub(m.clock.Now()), 0))
			}
		}

		timer := m.clock.NewTimer(next)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-changed:
			timer.Stop()
		case <-timer.C():
		}
	}
}

// newBackoff paces retries after errors: quick at first, for a blip, then no more than
// every five minutes, for an outage.
func newBackoff() wait.Backoff {
	return wait.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.1, Steps: 10, Cap: 5 * time.Minute}
}

// watchSecret signals changed, without blocking, on every event of the Secret, until ctx
// ends. One pending signal is enough: the Ensure it triggers reads the latest Secret.
func (m *Manager) watchSecret(ctx context.Context, changed chan<- struct{}) {
	signal := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	_, informer := cache.NewInformerWithOptions(cache.InformerOptions{
		ListerWatcher: m.secretWatch,
		ObjectType:    &corev1.Secret{},
		Handler: cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { signal() },
			UpdateFunc: func(any, any) { signal() },
			DeleteFunc: func(any) { signal() },
		},
	})
	informer.RunWithContext(ctx)
}

// watchOne lists and watches the single Secret name. client is the clientset, asked
// whether it supports watch-list semantics; the fake clientsets do not.
func watchOne(secrets secretClient, name string, client any) cache.ListerWatcher {
	selector := fields.OneTermEqualSelector(metav1.ObjectNameField, name).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			opts.FieldSelector = selector
			return secrets.List(ctx, opts)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.FieldSelector = selector
			return secrets.Watch(ctx, opts)
		},
	}
	return cache.ToListWatcherWithWatchListSemantics(lw, client)
}
