package dataplane

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/egressgw/egressgw/test/cluster"
	"github.com/egressgw/egressgw/test/topology"
)

// The package's tests share one cluster: three nodes on the floating IPs' segment (rack
// 1) and one on another (rack 2, behind the router), the real control plane, the
// controller, and an agent per node, with the spec's example applied.
var (
	sys     *cluster.Cluster
	startup error
)

// The agents' heartbeat grant and the controller's grace past it: a failed gateway's IPs
// move after about their sum. The suite runs with 600 and 200 ms; the flags measure the
// benchmarks at other settings (a TCP connection's stall across a failover is its first
// retransmission after the gap: 0.6 s after the fault with a failover under 0.6 s).
var (
	failoverLeaseFlag = flag.Duration("failover.lease", 600*time.Millisecond, "the agents' --lease-duration")
	failoverGraceFlag = flag.Duration("failover.grace", 200*time.Millisecond, "the controller's --grace")

	failoverLease, failoverGrace time.Duration
)

func TestMain(m *testing.M) {
	flag.Parse()
	failoverLease, failoverGrace = *failoverLeaseFlag, *failoverGraceFlag
	if os.Geteuid() != 0 {
		os.Exit(m.Run()) // every test fails (CI) or skips (elsewhere) on its own
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	sys, startup = cluster.Start(ctx, cluster.Options{Nodes: 3, Rack2Nodes: 1, LeaseDuration: failoverLease, Grace: failoverGrace})
	cancel()
	code := m.Run()
	if sys != nil {
		if code != 0 {
			fmt.Fprintf(os.Stderr, "component logs are in %s\n", sys.Logs)
		}
		if err := sys.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "closing the cluster:", err)
			code = 1
		}
		if code == 0 && os.Getenv("KEEP_LOGS") == "" {
			os.RemoveAll(sys.Logs)
		}
	}
	os.Exit(code)
}

// need fails (under CI) or skips (elsewhere) a test that cannot run here, and fails it
// if the cluster did not start.
func need(t testing.TB) *cluster.Cluster {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the dataplane tests need root (network namespaces, BPF); CI runs as root")
		}
		t.Skip("needs root")
	}
	if startup != nil {
		t.Fatalf("the cluster did not start: %v", startup)
	}
	return sys
}

// example is the spec's example, set up once: alice's and paul's frontends, alice's
// backend and bob's frontend, on the three nodes.
type example struct {
	egressIP netip.Addr
	gateway  *topology.Node // holds the egress IP
	// aliceGW is alice's frontend on the gateway node; paul is paul's frontend elsewhere.
	aliceGW, paul, backend, bob *cluster.Pod
	// rack2 is alice's frontend on the rack-2 node: selected, on no subnet of the egress
	// IP, so its traffic goes the routed way; rack2Bob is bob's there, not selected.
	rack2, rack2Bob *cluster.Pod
}

var (
	exampleOnce sync.Once
	ex          example
	exampleErr  error
)

func setupExample(t testing.TB) (*cluster.Cluster, example) {
	c := need(t)
	exampleOnce.Do(func() { ex, exampleErr = buildExample(c) })
	if exampleErr != nil {
		t.Fatalf("setting up the spec's example: %v", exampleErr)
	}
	return c, ex
}

func buildExample(c *cluster.Cluster) (example, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.ApplyExample(ctx); err != nil {
		return example{}, err
	}
	gw, err := c.WaitPolicyReady(ctx, "egress", time.Minute)
	if err != nil {
		return example{}, err
	}
	e := example{egressIP: netip.MustParseAddr(cluster.ExampleEgressIP), gateway: c.Node(gw)}
	var others []*topology.Node
	var rack2 *topology.Node
	for _, n := range c.Topo.Nodes {
		if n.Rack == 2 {
			rack2 = n
		} else if n != e.gateway {
			others = append(others, n)
		}
	}
	frontend := map[string]string{"role": "frontend"}
	for _, p := range []struct {
		into     **cluster.Pod
		node     string
		ns, name string
		labels   map[string]string
	}{
		{&e.aliceGW, e.gateway.Name, "alice", "frontend-gw", frontend},
		{&e.paul, others[0].Name, "paul", "frontend", frontend},
		{&e.backend, others[0].Name, "alice", "backend", map[string]string{"role": "backend"}},
		{&e.bob, others[1].Name, "bob", "frontend", frontend},
		{&e.rack2, rack2.Name, "alice", "frontend-rack2", frontend},
		{&e.rack2Bob, rack2.Name, "bob", "frontend-rack2", frontend},
	} {
		pod, err := c.AddPod(ctx, p.node, p.ns, p.name, p.labels)
		if err != nil {
			return example{}, err
		}
		*p.into = pod
	}
	// Every agent has programmed its pods once the selected pods leave with the egress IP.
	for _, p := range []*cluster.Pod{e.aliceGW, e.paul} {
		if err := eventually(30*time.Second, func() error {
			src, err := p.WhoUDP(ctx, topology.ExternalIP)
			if err == nil && src.Addr() != e.egressIP {
				err = fmt.Errorf("seen as %s", src.Addr())
			}
			return err
		}); err != nil {
			return example{}, fmt.Errorf("pod %s never left with %s: %w", p.Name, e.egressIP, err)
		}
	}
	return e, nil
}

// eventually retries f every 100 ms until it succeeds or timeout passes.
func eventually(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// agentMetric reads one sample of an agent's metrics: the sum over series of name whose
// labels contain every one of match.
func agentMetric(n *topology.Node, name string, match ...string) (float64, error) {
	body, err := sys.AgentMetrics(n)
	if err != nil {
		return 0, err
	}
	var sum float64
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
outer:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) || strings.HasPrefix(line, "#") {
			continue
		}
		for _, m := range match {
			if !strings.Contains(line, m) {
				continue outer
			}
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, sc.Err()
}
