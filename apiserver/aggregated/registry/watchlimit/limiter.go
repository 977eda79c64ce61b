package watchlimit

import (
	"context"
	"fmt"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/watch"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
)

// DefaultPerUser is how many watches one user may hold open unless told otherwise: a
// client needs one per resource and selector it follows, and kubectl get --watch one more.
const DefaultPerUser = 10

// Flag is the server flag that sets the limit; refusals name it.
const Flag = "--max-watches-per-user"

// Limiter counts each user's open watches.
type Limiter struct {
	perUser int
	mu      sync.Mutex
	open    map[string]int
}

// New returns a Limiter that lets each user hold perUser watches open.
func New(perUser int) *Limiter {
	return &Limiter{perUser: perUser, open: map[string]int{}}
}

// Watch opens a watch with start for the user of ctx if they hold fewer than the limit
// open, and otherwise refuses with 429 Too Many Requests. The watch gives its slot back
// when it is stopped or ctx ends, whichever comes first: the generic server stops every
// watch it serves, and ends ctx on the paths where it never serves one.
func (l *Limiter) Watch(ctx context.Context, start func() (watch.Interface, error)) (watch.Interface, error) {
	name := ""
	if u, ok := genericapirequest.UserFrom(ctx); ok {
		name = u.GetName()
	}
	if err := l.acquire(name); err != nil {
		return nil, err
	}
	w, err := start()
	if err != nil {
		l.release(name)
		return nil, err
	}
	lw := &limited{Interface: w, release: func() { l.release(name) }}
	// Once stopped, the watch stays registered until ctx ends, which the generic server
	// does as soon as it has stopped the watch; Stop does its work once.
	context.AfterFunc(ctx, lw.Stop)
	return lw, nil
}

// Open is how many watches user holds open.
func (l *Limiter) Open(user string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open[user]
}

func (l *Limiter) acquire(user string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[user] >= l.perUser {
		refused.Inc()
		return apierrors.NewTooManyRequestsError(fmt.Sprintf(
			"user %q already holds %d watches open, the most this server allows one user (%s=%d): stop one, or ask the administrator to raise %s",
			user, l.open[user], Flag, l.perUser, Flag))
	}
	l.open[user]++
	open.Inc()
	return nil
}

func (l *Limiter) release(user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[user]--; l.open[user] <= 0 {
		delete(l.open, user)
	}
	open.Dec()
}

// limited is a watch that holds one of its user's slots until it is stopped.
type limited struct {
	watch.Interface
	once    sync.Once
	release func()
}

func (w *limited) Stop() {
	w.once.Do(func() {
		w.Interface.Stop()
		w.release()
	})
}
