package controller

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
)

// LeaderElectionID names the leader election Lease.
const LeaderElectionID = "egressgw-controller"

// elector takes turns with the other replicas. Besides client-go's leadership, which
// gates placement, it decides when this replica answers heartbeats (answering):
//
//   - from winning the leadership, with a term that grows with every change of holder;
//   - until AckHold after its last successful renewal, even once client-go has given the
//     leadership up: an API server outage must not stop traffic, and nobody can take the
//     leadership while nobody reaches the API server;
//   - never again once it sees another holder, or once it releases the Lease.
//
// A new leader, in turn, fences: a node that has not yet sent it a beat in its term may
// still be answered by the previous leader, so it is not Down before the previous
// leader's answers have surely lapsed.
type elector struct {
	identity string
	opts     ElectionOptions
	clock    clock.PassiveClock
	lock     resourcelock.Interface
	onLead   func(term uint64, fence time.Time) // called on every win, in its own goroutine

	leading atomic.Bool

	mu         sync.Mutex
	term       uint64    // the term this replica answers in; 0 if none
	renewed    time.Time // start of the last successful renewal, monotonic
	superseded bool      // another holder, or released: answer no more
	fence      time.Time // this leader's own fence, passed on to the next
	// prevHolder is the holder seen before this replica won: empty if the Lease was
	// released or new, so nobody else can still be answering.
	prevHolder string
}

// ElectionOptions time the leader election and the answers.
type ElectionOptions struct {
	Namespace                                 string
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// AckHold is how long after its last renewal a replica that lost the leadership
	// still answers heartbeats: the longest API server outage traffic rides out.
	AckHold time.Duration
}

// newElector builds an elector whose identity is "name_random", followed by what
// heartbeat (the address agents send to and the key answers are authenticated with,
// "@host:port#key") returns of it; heartbeat may be nil when agents send no beats.
func newElector(cfg *rest.Config, opts ElectionOptions, heartbeat func(replica string) string, onLead func(uint64, time.Time)) (*elector, error) {
	host, _ := os.Hostname()
	buf := make([]byte, 4)
	if _, err := rand.Read(buf); err != nil {
		return nil, err
	}
	identity := host + "_" + hex.EncodeToString(buf)
	if heartbeat != nil {
		identity = heartbeat(identity)
	}
	kube, err := kubernetes.NewForConfig(rest.CopyConfig(cfg))
	if err != nil {
		return nil, err
	}
	e := &elector{identity: identity, opts: opts, clock: clock.RealClock{}, onLead: onLead}
	inner, err := resourcelock.New(resourcelock.LeasesResourceLock, opts.Namespace, LeaderElectionID,
		kube.CoreV1(), kube.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: identity})
	if err != nil {
		return nil, err
	}
	e.lock = &watchedLock{Interface: inner, e: e}
	return e, nil
}

// run takes part in the election until ctx ends: after losing the leadership it tries
// again, as the same identity, so it picks its term up again if nobody took over.
func (e *elector) run(ctx context.Context) error {
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            e.lock,
		LeaseDuration:   e.opts.LeaseDuration,
		RenewDeadline:   e.opts.RenewDeadline,
		RetryPeriod:     e.opts.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            LeaderElectionID,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) { e.won() },
			OnStoppedLeading: func() {
				if e.leading.Swap(false) {
					klog.InfoS("Lost the leadership; still answering heartbeats until the hold ends or another leader appears",
						"identity", e.identity, "hold", e.opts.AckHold)
				}
			},
		},
	})
	if err != nil {
		return err
	}
	for ctx.Err() == nil {
		le.Run(ctx)
	}
	return nil
}

// won starts a term. A new term fences, unless nobody else can be answering: the Lease
// was new, or released by a leader that had stopped answering.
func (e *elector) won() {
	e.mu.Lock()
	if e.prevHolder != "" {
		e.fence = e.clock.Now().Add(e.opts.AckHold)
	}
	e.prevHolder = ""
	term, fence := e.term, e.fence
	e.mu.Unlock()
	e.leading.Store(true)
	klog.InfoS("Leading", "identity", e.identity, "term", term, "fencedUntil", fence)
	e.onLead(term, fence)
}

// answering returns the term to answer heartbeats in, if this replica answers now.
func (e *elector) answering() (uint64, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.term == 0 || e.superseded || e.clock.Since(e.renewed) > e.opts.AckHold {
		return 0, false
	}
	return e.term, true
}

// watchedLock is the Lease lock, watched: it notes every renewal of ours, every other
// holder it sees, and it stops the answers before it releases the Lease.
type watchedLock struct {
	resourcelock.Interface
	e *elector
}

func (l *watchedLock) Get(ctx context.Context) (*resourcelock.LeaderElectionRecord, []byte, error) {
	rec, raw, err := l.Interface.Get(ctx)
	if err == nil {
		e := l.e
		e.mu.Lock()
		if rec.HolderIdentity != e.identity {
			if e.term != 0 && !e.superseded {
				klog.InfoS("Another replica holds the leadership; no longer answering heartbeats", "holder", rec.HolderIdentity)
			}
			e.superseded = true
			e.prevHolder = rec.HolderIdentity
		}
		e.mu.Unlock()
	}
	return rec, raw, err
}

func (l *watchedLock) Create(ctx context.Context, rec resourcelock.LeaderElectionRecord) error {
	return l.write(ctx, rec, l.Interface.Create)
}

func (l *watchedLock) Update(ctx context.Context, rec resourcelock.LeaderElectionRecord) error {
	return l.write(ctx, rec, l.Interface.Update)
}

func (l *watchedLock) write(ctx context.Context, rec resourcelock.LeaderElectionRecord, do func(context.Context, resourcelock.LeaderElectionRecord) error) error {
	e := l.e
	start := e.clock.Now()
	if rec.HolderIdentity != e.identity {
		// A release: stop answering first. A leader still fenced keeps the Lease, so
		// that the next one fences as well.
		e.mu.Lock()
		fenced := start.Before(e.fence)
		if !fenced {
			e.superseded = true
		}
		e.mu.Unlock()
		if fenced {
			return fmt.Errorf("not releasing the leadership while fenced until %s", e.fence)
		}
		return do(ctx, rec)
	}
	if err := do(ctx, rec); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	term := uint64(rec.LeaderTransitions) + 1
	if e.superseded || e.term != term {
		e.term, e.superseded = term, false
	}
	e.renewed = start
	return nil
}
