package view

import (
	"sync"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
)

var (
	watchesBehind = metrics.NewCounter(&metrics.CounterOpts{
		Name:           "egressgw_watches_closed_behind_total",
		Help:           "Watches of podegresses closed because their client fell more than a queue of changes behind; each was told to list again.",
		StabilityLevel: metrics.ALPHA,
	})
	register sync.Once
)

// RegisterMetrics adds the Store's metrics to the server's /metrics. Calling it again
// does nothing.
func RegisterMetrics() {
	register.Do(func() { legacyregistry.MustRegister(watchesBehind) })
}
