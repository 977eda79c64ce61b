package controller

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/egressgw/egressgw/controller/placement"
)

// Metrics, on controller-runtime's registry (served at /metrics with its own reconcile
// counters and latencies).
var (
	floatingIPs = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "egressgw_floating_ips", Help: "Floating IPs per gateway, by state: assigned or unassigned.",
	}, []string{"gateway", "state"})
	failovers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "egressgw_floating_ip_moves_total", Help: "Floating IPs moved to another node, by reason (NodeDown is a failover).",
	}, []string{"reason"})
	failoverSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "egressgw_failover_seconds",
		Help:    "From the moment a node's heartbeat lapsed (lease duration plus grace after its last renewal seen) to its floating IPs written to their new nodes.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
	})
	reconcileSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "egressgw_placement_pass_seconds", Help: "CPU-bound time of one full placement pass, reads to writes.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	})
	beatsAnswered = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "egressgw_heartbeats_answered_total", Help: "Node agents' UDP heartbeats answered, by whether the answer vouched for the node's grants.",
	}, []string{"answer"})
	beatsDropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "egressgw_heartbeats_dropped_total", Help: "UDP heartbeats not answered, by reason (not answering: not the leader, or past the hold).",
	}, []string{"reason"})
	staleCachePasses = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "egressgw_placement_stale_cache_passes_total", Help: "Passes that read the API server directly because the cache did not yet show the controller's own writes, or, after winning the leadership, the API server's current objects.",
	})
	leading = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "egressgw_controller_leader", Help: "1 while this replica leads (places IPs), by role; answering: it answers heartbeats, with its term as the value.",
	}, []string{"role"})
)

// RegisterMetrics adds the controller's metrics to controller-runtime's registry. It is
// called once, by New, not at init time.
func RegisterMetrics() error {
	for _, c := range []prometheus.Collector{floatingIPs, failovers, failoverSeconds, reconcileSeconds, beatsAnswered, beatsDropped, leading, staleCachePasses} {
		if err := metrics.Registry.Register(c); err != nil {
			if _, dup := err.(prometheus.AlreadyRegisteredError); !dup {
				return err
			}
		}
	}
	return nil
}

func recordMove(m placement.Move) { failovers.WithLabelValues(string(m.Reason)).Inc() }

// The answered series, bound once: answering is the leader's hot path.
var answeredVouched, answeredNotVouched = beatsAnswered.WithLabelValues("vouched"), beatsAnswered.WithLabelValues("not-vouched")
