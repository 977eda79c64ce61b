package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	versioned "github.com/egressgw/egressgw/apiserver/client/clientset/versioned"
	"github.com/egressgw/egressgw/apiserver/routing"
)

// kernel is what an agent programs: the real one on Linux, fakes in tests.
type kernel struct {
	dp   dataplane
	fips floatingIPs
	host host
}

func newAgent(opts Options, cfg *rest.Config, k kernel, reg prometheus.Registerer) (*Agent, error) {
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	net, err := versioned.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	a := &Agent{
		opts: opts, dp: k.dp, fips: k.fips, host: k.host, now: monotonic,
		report:   &apiReporter{client: net, node: opts.NodeName},
		tables:   routing.NewTableBuilder(),
		snatIDs:  routing.NewIDs(1, routing.MaxEgressIDs),
		trigger:  make(chan struct{}, 1),
		refresh:  make(chan struct{}, 1),
		attached: map[int]netip.Addr{},
	}
	// The heartbeat has a client of its own, without client-side throttling: a renewal
	// queued behind the agent's other requests would let the grant lapse.
	beatCfg := rest.CopyConfig(cfg)
	beatCfg.QPS = -1
	beatKube, err := kubernetes.NewForConfig(beatCfg)
	if err != nil {
		return nil, err
	}
	a.beat = &heartbeat{leases: beatKube.CoordinationV1(), node: opts.NodeName, duration: opts.Heartbeat.LeaseDuration, now: monotonic}
	if a.caches, err = newCaches(kube, net, opts.NodeName, a.handler()); err != nil {
		return nil, err
	}
	a.m = newMetrics(reg, a)
	if opts.Heartbeat.ControllerLease != "" {
		if err := a.caches.watchLeader(kube, opts.Heartbeat.ControllerLease); err != nil {
			return nil, err
		}
		a.beats = &beater{
			node: opts.NodeName, interval: opts.Heartbeat.Interval, lease: opts.Heartbeat.LeaseDuration, now: monotonic,
			beat: a.beat, leader: a.caches.leaderAddr, m: a.m,
			generation: func() int64 { return a.caches.grantGeneration(opts.NodeName) },
			extended:   a.extended,
			behind:     func() { signal(a.readGrants) },
			unanswered: func() { signal(a.readLeader) },
		}
		a.readGrants, a.readLeader = make(chan struct{}, 1), make(chan struct{}, 1)
		a.kube, a.net = kube, net
	}
	return a, nil
}

// run starts the caches, and runs the heartbeat and the passes until
// ctx ends. It leaves the kernel state in place when it returns: programs stay attached
// and IPs stay until their grant lapses, so a restart interrupts nothing.
func (a *Agent) run(ctx context.Context) error {
	if err := a.caches.start(ctx, time.Minute); err != nil {
		return err
	}
	// A restarted agent numbers its tables as before, so its first Sync changes nothing.
	if pods, egressIDs, err := a.dp.Numbering(); err != nil {
		klog.ErrorS(err, "Reading the dataplane's numbering; numbering afresh")
	} else {
		a.tables.Seed(pods, egressIDs)
	}
	// A restarted agent numbers the IPs it still grants as before: the nft table it
	// left behind maps those numbers.
	granted, err := a.dp.Grants()
	if err != nil {
		return err
	}
	a.snat = map[uint32]netip.Addr{}
	for ip, id := range granted {
		if err := a.snatIDs.Keep(ip.String(), id); err != nil {
			klog.ErrorS(err, "Renumbering a floating IP the dataplane still grants", "ip", ip)
			continue
		}
		a.snat[id] = ip
	}
	// Renew once before the first pass: a restarted agent on a gateway node keeps its IPs
	// only if it can show a fresh grant; without one, the first pass drops them. With
	// the direct channel, the fresh grant is the leader's vouched answer (the Lease write
	// creates the Lease, and cannot revive a grant).
	if a.beats != nil {
		go a.directReads(ctx)
		go func() {
			if err := a.beats.run(ctx); err != nil {
				klog.ErrorS(err, "UDP heartbeats stopped; renewing the Lease instead", "node", a.opts.NodeName)
			}
		}()
	}
	deadline := time.Now().Add(a.opts.Heartbeat.LeaseDuration / 2)
	for attempt, written := 1, false; ; attempt++ {
		if !written {
			rctx, cancel := context.WithTimeout(ctx, a.opts.Heartbeat.RenewInterval)
			err = a.beat.renew(rctx, a.beats == nil)
			cancel()
			written = err == nil
		}
		vouched := a.beats == nil || a.beat.lastVouched() != 0
		if err == nil && vouched || time.Now().After(deadline) || attempt >= 40 {
			if err != nil || !vouched {
				klog.ErrorS(err, "No heartbeat answered yet; holding no floating IPs until one is", "node", a.opts.NodeName)
			}
			break
		}
		time.Sleep(a.opts.Heartbeat.RenewInterval / 4)
	}
	klog.InfoS("Node agent started", "node", a.opts.NodeName,
		"leaseDuration", a.opts.Heartbeat.LeaseDuration, "renewInterval", a.opts.Heartbeat.RenewInterval)
	go a.heartbeatLoop(ctx)
	a.loop(ctx)
	return nil
}

// serveProbes serves /healthz (the process runs), /readyz (the last pass programmed
// everything) and /metrics.
func serveProbes(ctx context.Context, addr string, reg *prometheus.Registry, ready func() error) (string, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("listening for probes on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.ErrorS(err, "Probe server stopped")
		}
	}()
	return ln.Addr().String(), nil
}

func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// signal wakes whoever waits on c, without blocking.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// directReads reads the node's grants, or the leader's Lease, straight from the API
// server when the heartbeats show the informers behind: after an API server restart
// they reconnect with a backoff of seconds, and a failover must not wait for it. A read
// asked for too soon after the last one is skipped: the next heartbeat answer asks again.
// The grants are read at most every 200 ms; the Lease at most every 250 ms, slowing down
// to every 10 s while it names the same holder (the leader may just be unreachable).
func (a *Agent) directReads(ctx context.Context) {
	grants := pace{every: 200 * time.Millisecond}
	leader := pace{every: 250 * time.Millisecond}
	read := func(p *pace, object string, do func(context.Context) (bool, error)) bool {
		if !p.due() {
			return false
		}
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		changed, err := do(rctx)
		a.m.directReads.WithLabelValues(object, outcome(err)).Inc()
		return changed
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.readGrants:
			if read(&grants, "grants", func(ctx context.Context) (bool, error) {
				return a.caches.readOwn(ctx, a.net, a.opts.NodeName)
			}) {
				a.kick()
			}
		case <-a.readLeader:
			if read(&leader, "leader", func(ctx context.Context) (bool, error) {
				return a.caches.readLeader(ctx, a.kube, a.opts.Heartbeat.ControllerLease)
			}) {
				leader.every = 250 * time.Millisecond
			} else {
				leader.every = min(2*leader.every, 10*time.Second)
			}
		}
	}
}

// pace lets something happen at most once per every.
type pace struct {
	every time.Duration
	last  time.Time
}

func (p *pace) due() bool {
	if time.Since(p.last) < p.every {
		return false
	}
	p.last = time.Now()
	return true
}

func outcome(err error) string {
	if err != nil {
		return "failed"
	}
	return "ok"
}
