package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/egressgw/egressgw/test/cluster"
	"github.com/egressgw/egressgw/test/testenv"
)

// The package's tests share one cluster: three nodes, the real control plane, the
// webhook, the controller, the aggregated API server and an agent per node. Nothing is
// applied up front: each test creates what it needs and deletes it when it ends.
var (
	sys     *cluster.Cluster
	startup error
)

// The agents' heartbeat grant and the controller's grace past it: the harness's defaults,
// written out because the failover test's timing depends on them. A failed gateway's IPs
// move after about their sum. They are not shortened as in test/dataplane: this suite
// checks behaviour, not speed, on a machine that may be busy.
const (
	leaseDuration = 2 * time.Second
	grace         = 500 * time.Millisecond
)

func TestMain(m *testing.M) {
	flag.Parse()
	if os.Geteuid() != 0 {
		os.Exit(m.Run()) // every test fails (CI) or skips (elsewhere) on its own
	}
	stopWatchdog := watchdog()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	c, err := cluster.Start(ctx, cluster.Options{Nodes: 3, LeaseDuration: leaseDuration, Grace: grace})
	cancel()
	setCluster(c, err)
	code := m.Run()
	stopWatchdog()
	if err := closeCluster(code != 0); err != nil {
		fmt.Fprintln(os.Stderr, "closing the cluster:", err)
		code = 1
	}
	os.Exit(code)
}

var (
	clusterMu sync.Mutex
	closed    bool
)

func setCluster(c *cluster.Cluster, err error) {
	clusterMu.Lock()
	defer clusterMu.Unlock()
	sys, startup = c, err
	if closed && c != nil { // the watchdog fired while the cluster was starting
		_ = c.Close()
	}
}

// closeCluster stops the cluster once, whoever calls first: the end of the run or the
// watchdog. It keeps the component logs when the run failed.
func closeCluster(failed bool) error {
	clusterMu.Lock()
	defer clusterMu.Unlock()
	if closed || sys == nil {
		closed = true
		return nil
	}
	closed = true
	if failed {
		fmt.Fprintf(os.Stderr, "component logs are in %s\n", sys.Logs)
	}
	err := sys.Close()
	if !failed && err == nil {
		os.RemoveAll(sys.Logs)
	}
	return err
}

// watchdog closes the cluster before `go test` kills the binary for its -timeout, and on
// SIGINT or SIGTERM: a test binary that dies for either never returns from m.Run, and
// would leave the namespaces and the API server behind. It returns the function that
// disarms it.
func watchdog() (stop func()) {
	done := make(chan struct{})
	var fire <-chan time.Time
	if f := flag.Lookup("test.timeout"); f != nil {
		if d, ok := f.Value.(flag.Getter).Get().(time.Duration); ok && d > 0 {
			// Leave the cluster half a minute to close; a short timeout leaves a quarter.
			fire = time.After(d - min(30*time.Second, d/4))
		}
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		var why string
		select {
		case <-done:
			return
		case <-fire:
			why = "the test binary's -timeout is near"
		case s := <-signals:
			why = "got " + s.String()
		}
		fmt.Fprintf(os.Stderr, "e2e: %s; closing the cluster\n", why)
		if err := closeCluster(true); err != nil {
			fmt.Fprintln(os.Stderr, "closing the cluster:", err)
		}
		os.Exit(1)
	}()
	return func() {
		signal.Stop(signals)
		close(done)
	}
}

// need fails (under CI) or skips (elsewhere) a test that cannot run here, and fails it
// if the cluster did not start.
func need(t testing.TB) *cluster.Cluster {
	t.Helper()
	testenv.RequireRoot(t, "network namespaces, BPF and nftables for the local cluster")
	clusterMu.Lock()
	defer clusterMu.Unlock()
	if startup != nil {
		t.Fatalf("the cluster did not start: %v", startup)
	}
	if sys == nil || closed {
		t.Fatal("the cluster is not running")
	}
	return sys
}
