package watchlimit

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/apiserver/pkg/authentication/user"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
)

func as(ctx context.Context, name string) context.Context {
	return genericapirequest.WithUser(ctx, &user.DefaultInfo{Name: name})
}

// fakeWatch counts how often it was stopped.
type fakeWatch struct {
	watch.Interface
	stops int
}

func (f *fakeWatch) Stop() { f.stops++ }

func TestWatchLimitsEachUser(t *testing.T) {
	tests := []struct {
		name string
		// opens are the users who open a watch, in order; stops, after all opens, the
		// indexes of the watches that are stopped then.
		opens     []string
		stops     []int
		then      string // one more user who opens a watch after the stops
		wantOpen  map[string]int
		wantThen  bool // whether that last watch is allowed
		wantError []int
	}{
		{name: "up to the limit", opens: []string{"alice", "alice"}, wantOpen: map[string]int{"alice": 2}},
		{name: "the third of one user is refused", opens: []string{"alice", "alice", "alice"},
			wantOpen: map[string]int{"alice": 2}, wantError: []int{2}},
		{name: "another user still may", opens: []string{"alice", "alice", "bob"},
			wantOpen: map[string]int{"alice": 2, "bob": 1}},
		{name: "a stopped watch frees its slot", opens: []string{"alice", "alice"}, stops: []int{0}, then: "alice",
			wantOpen: map[string]int{"alice": 2}, wantThen: true},
		{name: "stopping twice frees one slot", opens: []string{"alice", "alice"}, stops: []int{0, 0}, then: "alice",
			wantOpen: map[string]int{"alice": 2}, wantThen: true},
		{name: "without a stop the user stays at the limit", opens: []string{"alice", "alice"}, then: "alice",
			wantOpen: map[string]int{"alice": 2}, wantThen: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := New(2)
			var watches []watch.Interface
			var failed []int
			for i, u := range tt.opens {
				w, err := l.Watch(as(context.Background(), u), func() (watch.Interface, error) { return &fakeWatch{}, nil })
				if err != nil {
					if !apierrors.IsTooManyRequests(err) {
						t.Fatalf("watch %d: err %v, want 429", i, err)
					}
					failed = append(failed, i)
				}
				watches = append(watches, w)
			}
			if len(failed) != len(tt.wantError) || (len(failed) > 0 && failed[0] != tt.wantError[0]) {
				t.Errorf("refused %v, want %v", failed, tt.wantError)
			}
			for _, i := range tt.stops {
				watches[i].Stop()
			}
			if tt.then != "" {
				_, err := l.Watch(as(context.Background(), tt.then), func() (watch.Interface, error) { return &fakeWatch{}, nil })
				if got := err == nil; got != tt.wantThen {
					t.Errorf("the last watch: err %v, want allowed %v", err, tt.wantThen)
				}
			}
			for u, want := range tt.wantOpen {
				if got := l.Open(u); got != want {
					t.Errorf("user %s holds %d, want %d", u, got, want)
				}
			}
		})
	}
}

// TestRefusalNamesTheLimitAndFlag: the user learns what they hit and what to change.
func TestRefusalNamesTheLimitAndFlag(t *testing.T) {
	l := New(1)
	start := func() (watch.Interface, error) { return &fakeWatch{}, nil }
	if _, err := l.Watch(as(context.Background(), "alice"), start); err != nil {
		t.Fatal(err)
	}
	_, err := l.Watch(as(context.Background(), "alice"), start)
	for _, want := range []string{`user "alice"`, "--max-watches-per-user=1", "429"} {
		if want == "429" {
			if status, ok := err.(apierrors.APIStatus); !ok || status.Status().Code != 429 {
				t.Errorf("err %v is not a 429", err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err %v does not say %q", err, want)
		}
	}
}

func TestFailedStartTakesNoSlot(t *testing.T) {
	l := New(1)
	boom := errors.New("boom")
	if _, err := l.Watch(as(context.Background(), "alice"), func() (watch.Interface, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("err %v, want the start's", err)
	}
	if got := l.Open("alice"); got != 0 {
		t.Errorf("a watch that failed to start holds %d slots", got)
	}
}

// TestEndedRequestFreesTheSlot: a request that ends without the watch being stopped (the
// generic server does not stop a watch it failed to serve) still gives its slot back, and
// stops the watch underneath.
func TestEndedRequestFreesTheSlot(t *testing.T) {
	l := New(1)
	ctx, cancel := context.WithCancel(as(context.Background(), "alice"))
	inner := &fakeWatch{}
	w, err := l.Watch(ctx, func() (watch.Interface, error) { return inner, nil })
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for l.Open("alice") != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := l.Open("alice"); got != 0 {
		t.Fatalf("after the request ended alice holds %d", got)
	}
	w.Stop() // The generic server's own Stop after: no second release.
	if inner.stops != 1 || l.Open("alice") != 0 {
		t.Errorf("inner watch stopped %d times, alice holds %d; want 1 and 0", inner.stops, l.Open("alice"))
	}
}
