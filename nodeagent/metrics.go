package nodeagent

import (
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"

	"github.com/egressgw/egressgw/nodeagent/floatingip"
)

type metrics struct {
	passSeconds     prometheus.Histogram
	nftSeconds      prometheus.Histogram
	nftRepairs      prometheus.Counter
	passErrors      prometheus.Counter
	renewFailures   prometheus.Counter
	heldIPs         prometheus.Gauge
	podsUncovered   prometheus.Gauge
	podsUnreachable prometheus.Gauge
	grantExpiry     prometheus.Gauge
	beats           *prometheus.CounterVec
	leaseWrites     prometheus.Counter
	directReads     *prometheus.CounterVec
	// conntrackDeleted counts the conntrack entries a change left stale (conntrack.go).
	conntrackDeleted *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, dp dataplane, h host) *metrics {
	m := &metrics{
		passSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "egressgw_agent_pass_seconds",
			Help:    "Time to program the node's dataplane after a change.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		nftSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "egressgw_agent_nft_write_seconds",
			Help:    "Time to replace the agent's nft table; it is written only when it changes.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 12),
		}),
		nftRepairs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "egressgw_agent_nft_repairs_total",
			Help: "Times the kernel's nft table no longer matched the agent's last write (flushed or edited by someone else) and was written again.",
		}),
		passErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "egressgw_agent_pass_errors_total", Help: "Dataplane passes that failed and were retried.",
		}),
		renewFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "egressgw_agent_heartbeat_failures_total", Help: "Heartbeat Lease renewals that failed.",
		}),
		heldIPs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "egressgw_agent_floating_ips_held", Help: "Floating IPs this node holds.",
		}),
		beats: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "egressgw_agent_heartbeats_total",
			Help: "UDP heartbeats to the controller's leader: sent, and answers by outcome (vouched extends the grant).",
		}, []string{"event"}),
		directReads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "egressgw_agent_direct_reads_total",
			Help: "Reads straight from the API server because an informer was behind: the node's grants (an answer vouched for newer ones) or the leader's Lease (answers stopped).",
		}, []string{"object", "outcome"}),
		leaseWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "egressgw_agent_lease_writes_total",
			Help: "Heartbeat Lease writes to the API server (every --lease-refresh while heartbeats are answered, every --renew-interval otherwise).",
		}),
		podsUncovered: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "egressgw_agent_pods_uncovered",
			Help: "Pods of this node that the fail-closed backstop or the gateways' source filter do not cover; the NetworkGatewayNode's PodsCovered condition names them.",
		}),
		podsUnreachable: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "egressgw_agent_pods_unreachable",
			Help: "Selected pod-policy pairs of this node whose egress IP is on no subnet of the node's interfaces and that the node has no route to, whose selected traffic is dropped; the NetworkGatewayNode's EgressReachable condition names them.",
		}),
		grantExpiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "egressgw_agent_grant_seconds_left", Help: "Seconds left on the node's grant after the last renewal.",
		}),
		conntrackDeleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "egressgw_agent_conntrack_deleted_total",
			Help: "Conntrack entries deleted because a change left them stale: unsteered (a flow no longer steered kept its pod IP) or grant-lost (SNATed to an egress IP this node no longer holds).",
		}, []string{"reason"}),
	}
	reg.MustRegister(m.passSeconds, m.nftSeconds, m.nftRepairs, m.passErrors, m.renewFailures, m.heldIPs, m.podsUncovered, m.podsUnreachable, m.grantExpiry, m.beats, m.leaseWrites, m.directReads, m.conntrackDeleted, &kernelCollector{dp: dp, host: h})
	return m
}

var (
	packetsDesc = prometheus.NewDesc("egressgw_agent_packets_total",
		"Packets seen by the BPF programs, by verdict.", []string{"verdict"}, nil)
	snatDesc = prometheus.NewDesc("egressgw_agent_snat_connections",
		"Conntrack entries SNATed to each egress IP this node holds (source ports in use).", []string{"egress_ip"}, nil)
)

// kernelCollector reads the BPF stats map and conntrack at scrape time.
type kernelCollector struct {
	dp   dataplane
	host host
}

func (c *kernelCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- packetsDesc
	ch <- snatDesc
}

func (c *kernelCollector) Collect(ch chan<- prometheus.Metric) {
	stats, err := c.dp.Stats()
	if err != nil {
		klog.ErrorS(err, "Reading BPF stats")
	}
	for verdict, n := range stats {
		ch <- prometheus.MustNewConstMetric(packetsDesc, prometheus.CounterValue, float64(n), verdict)
	}
	conns, err := c.host.SNATConnections()
	if err != nil {
		klog.ErrorS(err, "Counting SNAT connections")
	}
	for ip, n := range conns {
		ch <- prometheus.MustNewConstMetric(snatDesc, prometheus.GaugeValue, float64(n), ip.String())
	}
}

var (
	garpSentDesc = prometheus.NewDesc("egressgw_agent_garp_sent_total",
		"Gratuitous ARP frames sent to announce floating IPs this node acquired.", nil, nil)
	garpFailedDesc = prometheus.NewDesc("egressgw_agent_garp_failures_total",
		"Gratuitous ARP frames that could not be sent.", nil, nil)
)

// holderCollector exports the floating-IP holder's counters.
type holderCollector struct{ h *floatingip.Holder }

func registerHolderMetrics(reg prometheus.Registerer, h *floatingip.Holder) {
	reg.MustRegister(holderCollector{h: h})
}

func (c holderCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- garpSentDesc
	ch <- garpFailedDesc
}

func (c holderCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.h.Stats()
	ch <- prometheus.MustNewConstMetric(garpSentDesc, prometheus.CounterValue, float64(s.GARPSent))
	ch <- prometheus.MustNewConstMetric(garpFailedDesc, prometheus.CounterValue, float64(s.GARPFailed))
}
