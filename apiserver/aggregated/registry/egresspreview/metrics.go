package egresspreview

import (
	"sync"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
)

var (
	previewSeconds = metrics.NewHistogramVec(&metrics.HistogramOpts{
		Name:           "egressgw_preview_duration_seconds",
		Help:           "How long a packet-path preview takes in the server, from reading the caches to the answer, by verdict.",
		Buckets:        metrics.ExponentialBuckets(0.00005, 2, 14), // 50µs to 0.4s
		StabilityLevel: metrics.ALPHA,
	}, []string{"verdict"})
	register sync.Once
)

// RegisterMetrics adds the preview metrics to the server's /metrics. Call it once the
// server is built; calling it again does nothing.
func RegisterMetrics() {
	register.Do(func() { legacyregistry.MustRegister(previewSeconds) })
}
