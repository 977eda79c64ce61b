package controller

import (
	"context"
	"testing"
	"time"

	"k8s.io/client-go/tools/leaderelection/resourcelock"
	clocktesting "k8s.io/utils/clock/testing"
)

// fakeLock is a Lease lock in memory.
type fakeLock struct {
	resourcelock.Interface
	rec resourcelock.LeaderElectionRecord
}

func (f *fakeLock) Get(context.Context) (*resourcelock.LeaderElectionRecord, []byte, error) {
	r := f.rec
	return &r, nil, nil
}
func (f *fakeLock) Update(_ context.Context, r resourcelock.LeaderElectionRecord) error {
	f.rec = r
	return nil
}

func TestElectorAnswers(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Unix(1000, 0))
	var fences []time.Time
	e := &elector{identity: "me@198.51.100.2:7471", clock: clk, opts: ElectionOptions{AckHold: time.Minute},
		onLead: func(_ uint64, fence time.Time) { fences = append(fences, fence) }}
	inner := &fakeLock{rec: resourcelock.LeaderElectionRecord{HolderIdentity: "other", LeaderTransitions: 4}}
	l := &watchedLock{Interface: inner, e: e}
	ctx := context.Background()

	if _, ok := e.answering(); ok {
		t.Fatal("answering before leading")
	}
	if _, _, err := l.Get(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Update(ctx, resourcelock.LeaderElectionRecord{HolderIdentity: e.identity, LeaderTransitions: 5}); err != nil {
		t.Fatal(err)
	}
	e.won()
	if term, ok := e.answering(); !ok || term != 6 {
		t.Errorf("answering = %d, %v; want term 6 (transitions + 1)", term, ok)
	}
	if len(fences) != 1 || !fences[0].Equal(clk.Now().Add(time.Minute)) {
		t.Errorf("fences %v: taking over from another holder must fence for the hold", fences)
	}
	// Lost the leadership, API server away: still answering until the hold ends.
	clk.SetTime(clk.Now().Add(59 * time.Second))
	if _, ok := e.answering(); !ok {
		t.Error("stopped answering within the hold")
	}
	if err := l.Update(ctx, resourcelock.LeaderElectionRecord{}); err == nil {
		t.Error("released the leadership while fenced")
	}
	clk.SetTime(clk.Now().Add(2 * time.Second))
	if _, ok := e.answering(); ok {
		t.Error("answering past the hold")
	}
	// Renewed again, same term; then another holder appears: silent at once.
	if err := l.Update(ctx, resourcelock.LeaderElectionRecord{HolderIdentity: e.identity, LeaderTransitions: 5}); err != nil {
		t.Fatal(err)
	}
	if term, ok := e.answering(); !ok || term != 6 {
		t.Errorf("after renewing: answering = %d, %v; want 6, true", term, ok)
	}
	inner.rec = resourcelock.LeaderElectionRecord{HolderIdentity: "other", LeaderTransitions: 6}
	if _, _, err := l.Get(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.answering(); ok {
		t.Error("answering although another replica holds the leadership")
	}
	// Released by its holder (who stopped answering first): no fence for the next.
	inner.rec = resourcelock.LeaderElectionRecord{LeaderTransitions: 6}
	if _, _, err := l.Get(ctx); err != nil {
		t.Fatal(err)
	}
	clk.SetTime(clk.Now().Add(2 * time.Minute)) // past our own old fence
	if err := l.Update(ctx, resourcelock.LeaderElectionRecord{HolderIdentity: e.identity, LeaderTransitions: 7}); err != nil {
		t.Fatal(err)
	}
	e.won()
	if term, ok := e.answering(); !ok || term != 8 {
		t.Errorf("answering = %d, %v; want term 8", term, ok)
	}
	if last := fences[len(fences)-1]; clk.Now().Before(last) {
		t.Errorf("fenced until %v after taking a released Lease", last)
	}
	// Released by us: not answering from before the write.
	if err := l.Update(ctx, resourcelock.LeaderElectionRecord{LeaderTransitions: 7}); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.answering(); ok {
		t.Error("answering after releasing")
	}
}
