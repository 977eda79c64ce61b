package aggregated

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	watchapi "k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/egressgw/egressgw/apiserver/apis/egress/v1alpha1"
	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
)

// churnPods is how many of alice's pods one write to the churn policy changes the views
// of: each write makes that many watch events.
const churnPods = 400

// watchQueue is how many changes a watcher may fall behind (view.watchQueue).
const watchQueue = 1024

// TestWatchesBounded holds the server to its bounds on watches, as non-administrators
// reach it through kube-apiserver: each user holds at most --max-watches-per-user (10)
// open, and a watcher that stops reading is closed once it falls 1,024 changes behind,
// without the server keeping what it did not read. The server runs in a process of its
// own, as deployed, so that its resident set is its own.
func TestWatchesBounded(t *testing.T) {
	e, server := startProcess(t, "198.51.100.0/24")
	e.specExample(t)
	ctx := context.Background()
	mustKubectl(t, e.cp, []byte(viewsButNotPods), "apply", "-f", "-")
	mustKubectl(t, e.cp, nil, "create", "role", "pod-getter", "-n", "alice", "--verb=get,list,watch", "--resource=pods")
	for _, u := range []string{"watcher", "other-watcher", "slow-watcher", "fast-watcher"} {
		mustKubectl(t, e.cp, nil, "create", "clusterrolebinding", u+"-views", "--clusterrole=egress-views-only", "--user="+u)
		mustKubectl(t, e.cp, nil, "create", "rolebinding", u+"-pods", "-n", "alice", "--role=pod-getter", "--user="+u)
	}
	watchAs := func(ctx context.Context, user string) (watchapi.Interface, error) {
		cfg := rest.CopyConfig(e.cp.Config)
		cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
		return dynamic.NewForConfigOrDie(cfg).Resource(v1alpha1.SchemeGroupVersion.WithResource("podegresses")).
			Namespace("alice").Watch(ctx, metav1.ListOptions{})
	}

	t.Run("an 11th watch by one user gets 429, another user may still watch", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		var open []watchapi.Interface
		defer func() {
			for _, w := range open {
				w.Stop()
			}
		}()
		eventually(t, 30*time.Second, func() string { // RBAC reaches the server's authorizer.
			w, err := watchAs(ctx, "watcher")
			if err != nil {
				return err.Error()
			}
			open = append(open, w)
			return ""
		})
		for i := len(open); i < 10; i++ {
			w, err := watchAs(ctx, "watcher")
			if err != nil {
				t.Fatalf("watch %d of 10: %v", i+1, err)
			}
			open = append(open, w)
		}
		_, err := watchAs(ctx, "watcher")
		want := `user "watcher" already holds 10 watches open, the most this server allows one user (--max-watches-per-user=10): stop one, or ask the administrator to raise --max-watches-per-user`
		if !apierrors.IsTooManyRequests(err) || !strings.Contains(err.Error(), want) {
			t.Errorf("the 11th watch: err %v, want 429 saying %q", err, want)
		}
		w, err := watchAs(ctx, "other-watcher")
		if err != nil {
			t.Errorf("another user's watch: %v", err)
		} else {
			open = append(open, w)
		}
		// A watch that ends gives its slot back.
		open[0].Stop()
		eventually(t, 15*time.Second, func() string {
			w, err := watchAs(ctx, "watcher")
			if err != nil {
				return "after one of 10 stopped: " + err.Error()
			}
			open = append(open, w)
			return ""
		})
		metrics, err := getBody(e.directClient(t), serverURL+"/metrics")
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`(?m)^egressgw_watches_open [1-9]`).Match(metrics) || !regexp.MustCompile(`(?m)^egressgw_watches_refused_total [1-9]`).Match(metrics) {
			t.Errorf("/metrics does not count the open and refused watches:\n%s", regexp.MustCompile(`(?m)^egressgw_watches.*$`).FindAll(metrics, -1))
		}
	})

	t.Run("a watcher that stops reading is closed with 410, and the server keeps nothing for it", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(ctx, 6*time.Minute)
		defer cancel()
		churn := e.churn(t)
		eventually(t, 30*time.Second, func() string {
			out, err := e.cp.Kubectl(nil, "get", "podegresses", "-n", "alice", "--no-headers")
			if n := strings.Count(out, "churn-"); err != nil || n != churnPods {
				return fmt.Sprintf("%d churn pods' views, want %d (%v)", n, churnPods, err)
			}
			return ""
		})
		// The fast watcher reads everything, counting the changes and their size; the slow
		// one reads nothing until the server closes it.
		fast, err := watchAs(ctx, "fast-watcher")
		if err != nil {
			t.Fatal(err)
		}
		defer fast.Stop()
		var events, bytes atomic.Int64
		var fastErr atomic.Value
		go func() {
			for ev := range fast.ResultChan() {
				if ev.Type == watchapi.Error {
					fastErr.Store(apierrors.FromObject(ev.Object))
					return
				}
				if ev.Type == watchapi.Modified {
					data, _ := json.Marshal(ev.Object)
					events.Add(1)
					bytes.Add(int64(len(data)))
				}
			}
		}()
		writes := 0
		// write changes the churn policy, and waits for the fast watcher to see every
		// pod's view change: it paces the writes, so that the fast watcher never falls
		// behind.
		write := func() {
			t.Helper()
			churn(writes)
			writes++
			want := int64(churnPods * writes)
			eventually(t, 30*time.Second, func() string {
				if err := fastErr.Load(); err != nil {
					return fmt.Sprintf("the fast watcher was closed: %v", err)
				}
				if got := events.Load(); got < want {
					return fmt.Sprintf("the fast watcher saw %d changes, want %d", got, want)
				}
				return ""
			})
		}
		// The server's heap settles under the churn before the slow watcher comes: its
		// history of changes (--watch-history, 10,000) fills, twice over, and what
		// recomputing and encoding the views leaves to the garbage collector is then in
		// both measures.
		const settle = 2 * 10_000 / churnPods
		for range settle {
			write()
		}
		pid := server.Process.Pid
		before := procStatus(t, pid, "VmRSS")
		slow, err := watchAs(ctx, "slow-watcher")
		if err != nil {
			t.Fatal(err)
		}
		defer slow.Stop()
		started, from, fromBytes := time.Now(), events.Load(), bytes.Load()
		for serverMetric(t, e, "egressgw_watches_closed_behind_total") == 0 {
			if writes == settle+300 || time.Since(started) > 4*time.Minute {
				t.Fatalf("the slow watcher was not closed after %d writes (%d changes) in %s", writes-settle, events.Load()-from, time.Since(started).Round(time.Second))
			}
			write()
		}
		closedAfter := events.Load() - from
		// As many changes again after the close: a server that kept them for the slow
		// watcher would hold all of them now.
		for range writes - settle {
			write()
		}
		missed, missedBytes := events.Load()-from, bytes.Load()-fromBytes
		after, peak := procStatus(t, pid, "VmRSS"), procStatus(t, pid, "VmHWM")
		t.Logf("the server closed the slow watcher after %d changes; %d changes (%.1f MiB as JSON) in %s since it opened; the server's VmRSS %.1f MiB before, %.1f MiB after (peak %.1f MiB)",
			closedAfter, missed, float64(missedBytes)/(1<<20), time.Since(started).Round(time.Millisecond), float64(before)/(1<<20), float64(after)/(1<<20), float64(peak)/(1<<20))
		// The server may keep, for the slow watcher, its queue's 1,024 changes: views
		// shared with the Store, at most a few times their JSON in memory. Allow four
		// times that, and 4 MiB for the garbage collector's noise. Keeping the changes it
		// missed would cost at least their JSON, which is more.
		bound := 4*watchQueue*missedBytes/missed + 4<<20
		if bound >= missedBytes {
			t.Fatalf("the slow watcher missed %d bytes of changes, no more than the bound of %d: make more changes", missedBytes, bound)
		}
		if grew := after - before; grew > bound {
			t.Errorf("the server's VmRSS grew %.1f MiB while the slow watcher did not read, more than %.1f MiB", float64(grew)/(1<<20), float64(bound)/(1<<20))
		}

		// What was in flight to the slow watcher arrives, then the 410.
		var got int
		var last watchapi.Event
		timeout := time.After(time.Minute)
	drain:
		for got < int(missed) {
			select {
			case ev, ok := <-slow.ResultChan():
				if !ok {
					break drain
				}
				if last = ev; ev.Type == watchapi.Error {
					break drain
				}
				got++
			case <-timeout:
				t.Fatalf("no error event within a minute; %d events read", got)
			}
		}
		err = apierrors.FromObject(last.Object)
		if last.Type != watchapi.Error || !apierrors.IsResourceExpired(err) || !strings.Contains(err.Error(), "fell more than 1024 changes behind") ||
			!strings.Contains(err.Error(), "list again") {
			t.Fatalf("the slow watcher's last event: %s %v, want a 410 saying it fell more than 1024 changes behind and to list again", last.Type, err)
		}
		if int64(got) >= closedAfter {
			t.Errorf("the slow watcher read %d events, as many as there were changes before it was closed (%d): it did not fall behind", got, closedAfter)
		}
		t.Logf("the slow watcher read %d of the %d changes before it was closed, then: %v", got, closedAfter, err)
	})
}

// churn creates churnPods pods in alice and a policy that selects them, and returns a
// function whose every call changes the policy's destination, and so every pod's view.
func (e *env) churn(t *testing.T) func(i int) {
	t.Helper()
	ctx := context.Background()
	parallel(t, churnPods, func(i int) error {
		ip := fmt.Sprintf("198.18.%d.%d", 1+i/200, 20+i%200)
		return e.writePod("alice", fmt.Sprintf("churn-%03d", i), fmt.Sprintf("node%d", 1+i/200), ip, map[string]string{"role": "churn"})
	})
	policies := e.net.NetworkingV1().EgressNATPolicies()
	p, err := policies.Create(ctx, &v1.EgressNATPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "churn"},
		Spec: v1.EgressNATPolicySpec{
			Sources: []v1.EgressSource{{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"user": "alice"}},
				PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"role": "churn"}},
			}},
			Action:       v1.ActionSNAT,
			Destinations: []v1.Destination{{CIDR: "100.64.0.0/32"}},
			GatewayRef:   &v1.GatewayReference{Name: "default", Namespace: "kube-system"},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return func(i int) {
		t.Helper()
		p.Spec.Destinations[0].CIDR = fmt.Sprintf("100.64.%d.%d/32", (i+1)>>8&255, (i+1)&255)
		if p, err = policies.Update(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// serverMetric reads an unlabelled counter or gauge of the server's /metrics.
func serverMetric(t *testing.T, e *env, name string) int {
	t.Helper()
	metrics, err := getBody(e.directClient(t), serverURL+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(metrics)) {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatal(err)
			}
			return int(n)
		}
	}
	return 0 // a counter not yet incremented is not exported
}
