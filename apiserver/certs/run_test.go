package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"
)

func TestReady(t *testing.T) {
	apiDown := errors.New("connection refused")
	tests := []struct {
		name string
		// run drives m; it returns the last Ensure error, which the test ignores.
		run         func(t *testing.T, f *fixture, m *Manager)
		wantServing bool
		wantReady   bool
	}{
		{
			name: "before the first Ensure: nothing to serve",
			run:  func(*testing.T, *fixture, *Manager) {},
		},
		{
			name: "the bundle cannot be published: serving, not ready",
			run: func(t *testing.T, f *fixture, m *Manager) {
				f.kube.PrependReactor("patch", "validatingwebhookconfigurations", failing(-1, apiDown))
				_ = m.Ensure(context.Background())
			},
			wantServing: true,
		},
		{
			name:        "certificate loaded and bundles published: ready",
			run:         func(t *testing.T, f *fixture, m *Manager) { f.ensure(t, m) },
			wantServing: true,
			wantReady:   true,
		},
		{
			name: "a later API outage leaves a trusted replica ready",
			run: func(t *testing.T, f *fixture, m *Manager) {
				f.ensure(t, m)
				f.kube.PrependReactor("*", "*", failing(-1, apiDown))
				f.clock.Step(30 * day)
				_ = m.Ensure(context.Background())
			},
			wantServing: true,
			wantReady:   true,
		},
		{
			name: "the served certificate expired during an outage: not ready",
			run: func(t *testing.T, f *fixture, m *Manager) {
				f.ensure(t, m)
				f.kube.PrependReactor("*", "*", failing(-1, apiDown))
				f.clock.Step(400 * day)
				_ = m.Ensure(context.Background())
			},
			wantServing: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			m := f.manager(t)
			tt.run(t, f, m)
			cert, err := m.GetCertificate(&tls.ClientHelloInfo{})
			if gotServing := err == nil && cert != nil; gotServing != tt.wantServing {
				t.Errorf("GetCertificate() = %v, %v; want serving %t", cert != nil, err, tt.wantServing)
			}
			if err := m.Ready(); (err == nil) != tt.wantReady {
				t.Errorf("Ready() = %v, want ready %t", err, tt.wantReady)
			}
		})
	}
}

// startRun runs m.Run until the test ends, and fails the test if Run returns before its
// context is cancelled, or not soon after.
func startRun(t *testing.T, m *Manager) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		err := m.Run(ctx)
		if ctx.Err() == nil {
			t.Errorf("Run returned before its context ended: %v", err)
		}
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run() = %v after cancel, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return after its context was cancelled")
		}
	})
}

// eventually polls cond in real time; the fake clock does not move unless told to.
func eventually(t *testing.T, what string, cond func() bool, step func()) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		if step != nil {
			step()
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRunRecreatesADeletedSecretPromptly(t *testing.T) {
	f := newFixture(t)
	m := f.manager(t)
	startRun(t, m)
	// Deleting before the watch is open would go unseen until the next periodic check.
	eventually(t, "the first Ensure and the watch on the Secret", func() bool {
		return m.Ready() == nil && watching(f)
	}, nil)
	first := served(t, m)

	secrets := f.kube.CoreV1().Secrets(testNamespace)
	if err := secrets.Delete(context.Background(), testSecret, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The fake clock stands still, so only the watch on the Secret can bring Run round.
	eventually(t, "the Secret to be re-created", func() bool {
		_, err := secrets.Get(context.Background(), testSecret, metav1.GetOptions{})
		return err == nil
	}, nil)
	eventually(t, "a certificate from the new CA, published, to be served", func() bool {
		return !served(t, m).Equal(first) && m.Ready() == nil && f.servedTrusted(t, m) == nil
	}, nil)
}

// watching reports whether a watch on Secrets has been opened; the fake clientset records
// the action once the watcher is in place.
func watching(f *fixture) bool {
	for _, a := range f.kube.Actions() {
		if a.GetVerb() == "watch" && a.GetResource().Resource == "secrets" {
			return true
		}
	}
	return false
}

func TestRunRetriesAfterAPIErrors(t *testing.T) {
	f := newFixture(t)
	unavailable := apierrors.NewServiceUnavailable("apiserver is restarting")
	var gets atomic.Int32
	f.kube.PrependReactor("get", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		if gets.Add(1) <= 4 {
			return true, nil, unavailable
		}
		return false, nil, nil
	})
	m := f.manager(t)
	startRun(t, m)
	// Each failure sets a backoff timer on the fake clock, and with no Secret yet the watch
	// stays quiet: only firing the timer brings Run round again.
	eventually(t, "Run to recover", func() bool { return m.Ready() == nil }, func() {
		if f.clock.HasWaiters() {
			f.clock.Step(6 * time.Minute)
		}
	})
	if got := gets.Load(); got < 5 {
		t.Errorf("Secret read %d times, want the 4 failures retried", got)
	}
	f.requireServedTrusted(t, m)
}
