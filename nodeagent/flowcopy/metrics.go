package flowcopy

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the copy's, on both ends.
type Metrics struct {
	lag                                *prometheus.HistogramVec
	retransmits, snapshots, sendErrors prometheus.Counter
	refused                            *prometheus.CounterVec
	records, installed                 *prometheus.CounterVec
	copies                             prometheus.Gauge
}

// NewMetrics registers the copy's metrics with reg (none if reg is nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "egressgw_agent_flow_copy_lag_seconds",
			Help:    "From a conntrack change on this gateway to the standby's acknowledgement of its copy.",
			Buckets: []float64{.001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5},
		}, nil),
		retransmits: prometheus.NewCounter(prometheus.CounterOpts{Name: "egressgw_agent_flow_copy_retransmits_total",
			Help: "Datagrams of the conntrack copy sent again, unacknowledged in time."}),
		snapshots: prometheus.NewCounter(prometheus.CounterOpts{Name: "egressgw_agent_flow_copy_snapshots_total",
			Help: "Whole tables sent to a standby: at a stream's start, after lost events, and periodically."}),
		sendErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "egressgw_agent_flow_copy_send_errors_total",
			Help: "Datagrams of the conntrack copy the kernel refused to send."}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "egressgw_agent_flow_copy_refused_total",
			Help: "Copy datagrams and records refused, by reason: malformed, mac (fails to authenticate), unknown-session, not-holder (from a node not holding the IP), held (an IP this node holds), full (--flow-copy-max-entries)."},
			[]string{"reason"}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "egressgw_agent_flow_copy_records_total",
			Help: "Copies of other gateways' conntrack entries this standby took, by operation: create, update, delete, sweep (a snapshot no longer listed it)."},
			[]string{"op"}),
		installed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "egressgw_agent_flow_copy_installed_total",
			Help: "Copies written into this node's conntrack when it took their IP over, by result: ok, failed."},
			[]string{"result"}),
		copies: prometheus.NewGauge(prometheus.GaugeOpts{Name: "egressgw_agent_flow_copies",
			Help: "Conntrack entries this node keeps as a standby, copied from the holders of other IPs."}),
	}
	if reg != nil {
		reg.MustRegister(m.lag, m.retransmits, m.snapshots, m.sendErrors, m.refused, m.records, m.installed, m.copies)
	}
	return m
}

// Installed counts copies written into conntrack at a takeover.
func (m *Metrics) Installed(ok, failed int) {
	m.installed.WithLabelValues("ok").Add(float64(ok))
	m.installed.WithLabelValues("failed").Add(float64(failed))
}
