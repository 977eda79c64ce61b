package view

import (
	"fmt"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/klog/v2"

	"github.com/egressgw/egressgw/apiserver/apis/egress/v1alpha1"
)

const (
	added    = watch.Added
	modified = watch.Modified
	deleted  = watch.Deleted
)

// watchQueue is how many events a watcher may fall behind before it is closed. Its
// client is then told to list again (410 Gone), as kube-apiserver closes a watcher that
// does not keep up: the server never buffers more than this for a slow client.
const watchQueue = 1024

// fellBehind is the last event of a watch that fell behind.
var fellBehind = apierrors.NewResourceExpired(fmt.Sprintf(
	"the watch fell more than %d changes behind and was closed: list again, then watch from the list's resourceVersion", watchQueue)).ErrStatus

// event is one change of one view. obj and prev are shared by every watcher: read-only.
type event struct {
	rv   uint64
	typ  watch.EventType
	obj  *v1alpha1.PodEgress
	prev *v1alpha1.PodEgress
}

// broadcaster keeps recent events for watches that resume, and hands new ones to the
// watchers. The Store's lock guards it.
type broadcaster struct {
	history []event // a ring of the newest events
	next    int
	// evicted is the resourceVersion of the newest event dropped from the ring: a watch
	// from an older resourceVersion cannot resume.
	evicted  uint64
	watchers map[*watcher]struct{}
}

func newBroadcaster(size int) *broadcaster {
	return &broadcaster{history: make([]event, 0, size), watchers: map[*watcher]struct{}{}}
}

func (b *broadcaster) send(events []event) {
	for _, ev := range events {
		if len(b.history) < cap(b.history) {
			b.history = append(b.history, ev)
		} else {
			b.evicted = b.history[b.next].rv
			b.history[b.next] = ev
			b.next = (b.next + 1) % len(b.history)
		}
		for w := range b.watchers {
			select {
			case w.queue <- ev:
			default:
				// Never block the Store for a slow client, nor keep what it has not read:
				// it is told to list again.
				delete(b.watchers, w)
				close(w.behind)
			}
		}
	}
}

// since returns the events after rv, oldest first, and whether all of them are still
// kept.
func (b *broadcaster) since(rv uint64) ([]event, bool) {
	if rv < b.evicted {
		return nil, false
	}
	var out []event
	n := len(b.history)
	for i := range n {
		ev := b.history[(b.next+i)%n]
		if ev.rv > rv {
			out = append(out, ev)
		}
	}
	return out, true
}

// watcher is one watch: a goroutine that filters events and copies them out.
type watcher struct {
	namespace string
	match     func(*v1alpha1.PodEgress) bool
	initial   []event
	bookmark  *v1alpha1.PodEgress
	queue     chan event    // sent to under the Store's lock, while in the watchers
	behind    chan struct{} // closed, under the Store's lock, when queue overflowed
	result    chan watch.Event
	done      chan struct{}
	once      sync.Once
	remove    func(*watcher)
}

var _ watch.Interface = &watcher{}

func (w *watcher) ResultChan() <-chan watch.Event { return w.result }

func (w *watcher) Stop() {
	w.once.Do(func() {
		close(w.done)
		w.remove(w)
	})
}

func (w *watcher) run() {
	defer close(w.result)
	w.stream()
	select {
	case <-w.behind:
	default:
		return
	}
	// Let go of every view the client did not read, so that a client that reads nothing
	// keeps nothing but this goroutine: the Store no longer sends to the queue.
	w.initial = nil
	for len(w.queue) > 0 {
		<-w.queue
	}
	watchesBehind.Inc()
	klog.V(2).InfoS("Closed a watch of podegresses that fell behind", "namespace", w.namespace, "queue", watchQueue)
	select {
	case w.result <- watch.Event{Type: watch.Error, Object: fellBehind.DeepCopy()}:
	case <-w.done:
	}
}

// stream sends the initial events, the bookmark that ends them, then every change, until
// the watch is stopped or falls behind.
func (w *watcher) stream() {
	for i, ev := range w.initial {
		if !w.deliver(ev) {
			return
		}
		w.initial[i] = event{} // Sent: not this watch's to keep.
	}
	w.initial = nil
	if w.bookmark != nil {
		select {
		case w.result <- watch.Event{Type: watch.Bookmark, Object: w.bookmark}:
		case <-w.done:
			return
		case <-w.behind:
			return
		}
	}
	for {
		select {
		case ev := <-w.queue:
			if !w.deliver(ev) {
				return
			}
		case <-w.done:
			return
		case <-w.behind:
			return
		}
	}
}

// deliver sends ev if it concerns the watch. A view that stops matching the selectors is
// deleted from the watcher's point of view, and one that starts matching is added.
func (w *watcher) deliver(ev event) bool {
	if w.namespace != "" && ev.obj.Namespace != w.namespace {
		return true
	}
	now := w.match(ev.obj)
	before := ev.prev != nil && w.match(ev.prev)
	typ := ev.typ
	switch {
	case ev.typ == deleted:
		if !now {
			return true
		}
	case now && before:
		typ = modified
	case now:
		typ = added
	case before:
		typ = deleted
	default:
		return true
	}
	select {
	case w.result <- watch.Event{Type: typ, Object: shallow(ev.obj)}:
		return true
	case <-w.done:
		return false
	case <-w.behind:
		return false
	}
}

func initialEventsEnd(rv string) *v1alpha1.PodEgress {
	return &v1alpha1.PodEgress{ObjectMeta: metav1.ObjectMeta{
		ResourceVersion: rv,
		Annotations:     map[string]string{metav1.InitialEventsAnnotationKey: "true"},
	}}
}
