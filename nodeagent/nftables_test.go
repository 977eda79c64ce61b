package nodeagent

import (
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestNftWriterRepairsWhatTheKernelLost: the writer compared only with its own last
// write, so after `nft flush ruleset` the SNAT map and the guard stayed gone. Now a
// listing that no longer matches, read at most once per resync interval, makes it write
// the table again.
func TestNftWriterRepairsWhatTheKernelLost(t *testing.T) {
	n := nftState{SNAT: map[uint32]netip.Addr{1: netip.MustParseAddr("198.51.100.100")}}
	tests := []struct {
		name string
		// kernel changes the fake kernel's listing after the first write.
		kernel func(string) string
		after  time.Duration // since the first write
		want   int           // writes, the first included
	}{
		{name: "untouched", kernel: func(s string) string { return s }, after: time.Minute, want: 1},
		{name: "flushed", kernel: func(string) string { return "" }, after: time.Minute, want: 2},
		{name: "a rule deleted", kernel: func(s string) string { return s[:len(s)/2] }, after: time.Minute, want: 2},
		{name: "reformatted only", kernel: func(s string) string { return "\n  " + s + "\n" }, after: time.Minute, want: 1},
		{name: "flushed, before the resync interval is up", kernel: func(string) string { return "" }, after: time.Second, want: 1},
		// The resync ticker's pass comes a moment less than an interval after the last
		// read: were it skipped, a flush would go unrepaired for two intervals.
		{name: "flushed, read by the next resync's pass", kernel: func(string) string { return "" }, after: 30*time.Second - 50*time.Millisecond, want: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &fakeClock{}
			h := &fakeHost{rec: &recorder{clock: clock}}
			w := &nftWriter{host: h, node: "n1", m: newMetrics(prometheus.NewRegistry(), nil, h),
				now: clock.now, resync: 30 * time.Second}
			if err := w.apply(n); err != nil {
				t.Fatal(err)
			}
			h.listing = tt.kernel(h.listing)
			clock.t += tt.after
			if err := w.apply(n); err != nil {
				t.Fatal(err)
			}
			got := 0
			for i := h.rec.index(op("ApplyNftables"), 0); i >= 0; i = h.rec.index(op("ApplyNftables"), i+1) {
				got++
			}
			if got != tt.want {
				t.Errorf("writes = %d, want %d", got, tt.want)
			}
		})
	}
}
