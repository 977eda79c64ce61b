package watchlimit

import (
	"sync"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
)

var (
	open = metrics.NewGauge(&metrics.GaugeOpts{
		Name:           "egressgw_watches_open",
		Help:           "How many watches of podegresses are open, of every user.",
		StabilityLevel: metrics.ALPHA,
	})
	refused = metrics.NewCounter(&metrics.CounterOpts{
		Name:           "egressgw_watches_refused_total",
		Help:           "Watches refused with 429 because their user already held " + Flag + " open.",
		StabilityLevel: metrics.ALPHA,
	})
	register sync.Once
)

// RegisterMetrics adds the watch metrics to the server's /metrics. Calling it again does
// nothing.
func RegisterMetrics() {
	register.Do(func() { legacyregistry.MustRegister(open, refused) })
}
