package view

import (
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/egressgw/egressgw/apiserver/apis/egress/v1alpha1"
)

const (
	added    = watch.Added
	modified = watch.Modified
	deleted  = watch.Deleted
)

// watchQueue is how many events a watcher may fall behind before it is closed; its
// client then watches again from the last resourceVersion it saw.
const watchQueue = 1024

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
				// Never block the Store for a slow client: it resumes from history.
				delete(b.watchers, w)
				close(w.queue)
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
	queue     chan event
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
	for _, ev := range w.initial {
		if !w.deliver(ev) {
			return
		}
	}
	w.initial = nil
	if w.bookmark != nil {
		select {
		case w.result <- watch.Event{Type: watch.Bookmark, Object: w.bookmark}:
		case <-w.done:
			return
		}
	}
	for {
		select {
		case ev, ok := <-w.queue:
			if !ok || !w.deliver(ev) {
				return
			}
		case <-w.done:
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
	}
}

func initialEventsEnd(rv string) *v1alpha1.PodEgress {
	return &v1alpha1.PodEgress{ObjectMeta: metav1.ObjectMeta{
		ResourceVersion: rv,
		Annotations:     map[string]string{metav1.InitialEventsAnnotationKey: "true"},
	}}
}
