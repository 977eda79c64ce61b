package integration

import (
	"context"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/egressgw/egressgw/controller"
	"github.com/egressgw/egressgw/test/controlplane"
	"github.com/egressgw/egressgw/test/standin"
)

// TestControllerWaitsForTheAPIServer: a controller that starts while the API server is
// unreachable waits for it, rather than exiting, and places IPs once it is back. (A
// replica restarted just as an API server outage began used to exit after 30 s, and
// nothing led afterwards.) The API server is reached through a TCP relay that starts
// listening only 2 s after the controller.
func TestControllerWaitsForTheAPIServer(t *testing.T) {
	cp := controlplane.StartForTest(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // refused until the relay listens there
	target, err := url.Parse(cp.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.CopyConfig(cp.Config)
	cfg.Host = "https://" + addr
	const away = 2 * time.Second
	relayErr := make(chan error, 1)
	var relay net.Listener
	var mu sync.Mutex
	time.AfterFunc(away, func() {
		l, err := net.Listen("tcp", addr)
		relayErr <- err
		if err != nil {
			return
		}
		mu.Lock()
		relay = l
		mu.Unlock()
		go relayTo(l, target.Host)
	})
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		if relay != nil {
			relay.Close()
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	c, err := controller.NewWhenReachable(ctx, cfg, controller.Options{Grace: 500 * time.Millisecond, MetricsAddr: "0", ProbeAddr: "0", SeveralInProcess: true})
	if err != nil {
		t.Fatalf("the controller did not start once the API server was back: %v", err)
	}
	if err := <-relayErr; err != nil {
		t.Fatalf("the relay could not listen on %s: %v", addr, err)
	}
	if took := time.Since(start); took < away {
		t.Fatalf("the controller started after %s, before the API server could be reached", took)
	}
	t.Logf("the controller started %s after it was launched; the API server was away for %s", time.Since(start).Round(time.Millisecond), away)
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Start(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("controller: %v", err)
		}
	})

	standin.Start(t, cp.Config, twoWorkers)
	defer applySpec(t, cp, "v1-networkgatewaygroup-status.yaml")()
	want := `{"nodes":{"worker1":"Up","worker2":"Up"},"floatingIPs":{"192.168.1.100":"worker1","192.168.1.101":"worker2","192.168.1.102":"worker1"}}`
	eventually(t, 20*time.Second, func() string {
		return diffStatus(gatewayStatus(t, cp, "default"), want)
	})
}

// relayTo forwards every connection l accepts to target, until l is closed.
func relayTo(l net.Listener, target string) {
	for {
		in, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer in.Close()
			out, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				return
			}
			defer out.Close()
			go func() { _, _ = io.Copy(out, in); out.Close() }()
			_, _ = io.Copy(in, out)
		}()
	}
}
