package dataplane

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// BenchmarkFailoverConnections is BenchmarkFailover with connections: in each trial, 20
// long-lived TCP connections from selected pods on other nodes than the gateway go
// through it, each checked byte for byte (tcpStream); then, in the last second before
// the fault, 10 more open, one every 100 ms, the last just before the gateway node fails
// hard (agent killed, link down). Every long-lived connection must go on, through the
// standby: a reset or a wrong byte fails the benchmark. It reports the stall (each
// connection's longest wait for an echo across the failover, which TCP's retransmission
// timer sets, next to the failover gap of the probe), and how many of the young
// connections survived, by age.
func BenchmarkFailoverConnections(b *testing.B) {
	c, ex := setupExample(b)
	ctx := context.Background()
	var stalls, gaps []time.Duration
	youngByAge := map[time.Duration][2]int{} // age rounded to 100 ms → survived, opened
	for trial := 0; b.Loop(); trial++ {
		b.StopTimer()
		w := watchFault(b, c, ex, fmt.Sprintf("fc%d", trial))
		old := w.old
		standby := standbyOf(b, c, ex.egressIP)
		pods := selectedPodsAwayFrom(ex, old)
		ss := openStreams(b, pods, 20, fmt.Sprintf("fc%d-s", trial))
		ss.copied(b, c, standby)
		ss.flowing(b, 5*time.Second)
		var young streams
		var opened []time.Time
		for i := range 10 {
			young = append(young, openStreams(b, pods[i%len(pods):i%len(pods)+1], 1, fmt.Sprintf("fc%d-y%d-", trial, i))...)
			opened = append(opened, time.Now())
			if i < 9 {
				time.Sleep(100 * time.Millisecond)
			}
		}
		b.StartTimer()
		fault := time.Now()
		if err := crash(c, old); err != nil {
			b.Fatal(err)
		}
		gw, err := c.WaitGatewayNodeChange(ctx, "egress", old.Name, 30*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		gap, _ := w.resumed(b, c, ex.egressIP, gw)
		b.StopTimer()
		if gw != standby.Name {
			b.Errorf("trial %d: the IP went to %s, not its standby %s", trial, gw, standby.Name)
		}
		ss.flowing(b, 15*time.Second)
		survived := young.survivors(15 * time.Second)
		for i := range young {
			age := fault.Sub(opened[i]).Round(100 * time.Millisecond)
			v := youngByAge[age]
			v[1]++
			if survived[i] {
				v[0]++
			}
			youngByAge[age] = v
		}
		trialStalls := ss.stallsAfter(fault)
		stalls = append(stalls, trialStalls...)
		gaps = append(gaps, gap)
		trialLog("trial %d: %s → %s: gap %s; 20 connections survived, stalls %s–%s; young connections survived: %d of 10",
			trial, old.Name, gw, gap.Round(time.Millisecond), trialStalls[0].Round(time.Millisecond), trialStalls[len(trialStalls)-1].Round(time.Millisecond), count(survived))
		ss.close()
		young.close()
		endCrashTrial(b, c, ex, w, trial)
		b.StartTimer()
	}
	b.StopTimer()
	reportStalls(b, stalls, gaps)
	var ages []string
	young, survivedYoung := 0, 0
	for _, v := range youngByAge {
		survivedYoung, young = survivedYoung+v[0], young+v[1]
	}
	b.ReportMetric(float64(survivedYoung), "young-survived")
	b.ReportMetric(float64(young), "young-opened")
	for _, age := range slices.Sorted(maps.Keys(youngByAge)) {
		v := youngByAge[age]
		ages = append(ages, fmt.Sprintf("%s: %d/%d", age, v[0], v[1]))
	}
	b.Logf("young connections surviving, by age at the fault: %s", strings.Join(ages, ", "))
}

// BenchmarkCordonConnections is BenchmarkCordon with 20 long-lived connections per trial:
// every one must survive the planned move. It reports their stalls next to the probe's
// gaps.
func BenchmarkCordonConnections(b *testing.B) {
	c, ex := setupExample(b)
	var stalls, gaps []time.Duration
	for trial := 0; b.Loop(); trial++ {
		b.StopTimer()
		w := watchFault(b, c, ex, fmt.Sprintf("cc%d", trial))
		standby := standbyOf(b, c, ex.egressIP)
		ss := openStreams(b, selectedPodsAwayFrom(ex, w.old), 20, fmt.Sprintf("cc%d-s", trial))
		ss.copied(b, c, standby)
		ss.flowing(b, 5*time.Second)
		move := time.Now()
		b.StartTimer()
		gw, gap, _, uncordon := cordonOnce(b, c, ex, w)
		b.StopTimer()
		if gw != standby.Name {
			b.Errorf("trial %d: the IP went to %s, not its standby %s", trial, gw, standby.Name)
		}
		ss.flowing(b, 15*time.Second)
		trialStalls := ss.stallsAfter(move)
		stalls, gaps = append(stalls, trialStalls...), append(gaps, gap)
		trialLog("trial %d: %s → %s: gap %s; 20 connections survived, the longest stall %s", trial, w.old.Name, gw, gap.Round(time.Millisecond), trialStalls[len(trialStalls)-1].Round(time.Millisecond))
		ss.close()
		uncordon()
		w.check(b, c, ex.egressIP)
		if b.Failed() {
			b.FailNow()
		}
		b.StartTimer()
	}
	b.StopTimer()
	reportStalls(b, stalls, gaps)
}

// trialLog logs one trial's line on stderr: a benchmark's own log keeps only its first
// ten lines, and the summaries come last.
func trialLog(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "    "+format+"\n", args...)
}

// reportStalls reports the connections' stalls and the probe's gaps (0: no wait for an
// echo longer than 50 ms).
func reportStalls(b *testing.B, stalls, gaps []time.Duration) {
	slices.Sort(stalls)
	slices.Sort(gaps)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(stalls[len(stalls)/2]), "median-stall-ms")
	b.ReportMetric(ms(stalls[len(stalls)-1]), "worst-stall-ms")
	b.ReportMetric(ms(gaps[len(gaps)/2]), "median-gap-ms")
	b.ReportMetric(ms(gaps[len(gaps)-1]), "worst-gap-ms")
	b.Logf("%d trials, %d connection stalls: median %s, worst %s; probe gaps: median %s, worst %s (lease %s, grace %s)",
		len(gaps), len(stalls), stalls[len(stalls)/2].Round(time.Millisecond), stalls[len(stalls)-1].Round(time.Millisecond),
		gaps[len(gaps)/2].Round(time.Millisecond), gaps[len(gaps)-1].Round(time.Millisecond), failoverLease, failoverGrace)
}

func count(bs []bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}
