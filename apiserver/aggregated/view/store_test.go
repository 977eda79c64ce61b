package view

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/egressgw/egressgw/apiserver/apis/egress/v1alpha1"
	"github.com/egressgw/egressgw/apiserver/apis/networking"
	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
)

var epoch = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// rv hands out increasing resourceVersions, as etcd does.
type rv struct{ n int }

func (r *rv) next() string { r.n++; return fmt.Sprint(r.n) }

func newPod(namespace, name, node, ip string, labels ...string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: map[string]string{}},
		Spec:       corev1.PodSpec{NodeName: node},
		Status:     corev1.PodStatus{PodIP: ip, Phase: corev1.PodRunning},
	}
	for i := 0; i+1 < len(labels); i += 2 {
		p.Labels[labels[i]] = labels[i+1]
	}
	return p
}

func newNamespace(name string, labels ...string) *corev1.Namespace {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
	for i := 0; i+1 < len(labels); i += 2 {
		ns.Labels[labels[i]] = labels[i+1]
	}
	return ns
}

func newNode(name, ip, podCIDR string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.NodeSpec{PodCIDR: podCIDR},
		Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}},
	}
}

// specPolicy is the spec's policy: role=frontend pods of alice and paul to 8.8.8.0/24
// through kube-system/default; age orders policies.
func specPolicy(name string, age time.Duration, gateway string, dests ...string) *v1.EgressNATPolicy {
	src := func(user string) v1.EgressSource {
		return v1.EgressSource{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"user": user}},
			PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"role": "frontend"}},
		}
	}
	p := &v1.EgressNATPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(epoch.Add(-age))},
		Spec: v1.EgressNATPolicySpec{
			Sources: []v1.EgressSource{src("alice"), src("paul")}, Action: v1.ActionSNAT,
			GatewayRef: &v1.GatewayReference{Namespace: "kube-system", Name: gateway},
		},
	}
	for _, d := range dests {
		p.Spec.Destinations = append(p.Spec.Destinations, v1.Destination{CIDR: d})
	}
	return p
}

// fixture is the spec's example on three nodes: gateway kube-system/default with its
// first IP on node2.
type fixture struct {
	s  *Store
	rv rv
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{s: New([]netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}, 0)}
	for i := 1; i <= 3; i++ {
		f.s.SetNode(newNode(fmt.Sprintf("node%d", i), fmt.Sprintf("198.51.100.1%d", i), fmt.Sprintf("198.18.%d.0/24", i)))
	}
	f.s.SetNamespace(newNamespace("alice", "user", "alice"))
	f.s.SetNamespace(newNamespace("paul", "user", "paul"))
	f.s.SetNamespace(newNamespace("bob", "user", "bob"))
	f.gateway(map[string]string{"198.51.100.100": "node2", "198.51.100.101": "node1"})
	f.s.SetNodeReport(report("node2", "198.51.100.100"))
	f.s.SetPolicy(specPolicy("egress", time.Hour, "default", "8.8.8.0/24"))
	for _, p := range []*corev1.Pod{
		newPod("alice", "frontend", "node1", "198.18.1.10", "role", "frontend"),
		newPod("alice", "backend", "node1", "198.18.1.11", "role", "backend"),
		newPod("paul", "frontend", "node3", "198.18.3.10", "role", "frontend"),
		newPod("bob", "frontend", "node3", "198.18.3.11", "role", "frontend"),
	} {
		f.setPod(p)
	}
	f.s.Synced()
	return f
}

func (f *fixture) setPod(p *corev1.Pod) { p.ResourceVersion = f.rv.next(); f.s.SetPod(p) }

func (f *fixture) gateway(placed map[string]string) { f.gatewayWith(placed, nil) }

func (f *fixture) gatewayWith(placed, standbys map[string]string) {
	f.s.SetGateway(networking.KindNetworkGatewayGroup, "kube-system", "default",
		[]string{"198.51.100.100", "198.51.100.101", "198.51.100.102"}, placed, standbys, f.rv.next())
}

func report(node string, ips ...string) *v1.NetworkGatewayNode {
	return &v1.NetworkGatewayNode{
		ObjectMeta: metav1.ObjectMeta{Namespace: networking.NodeNamespace, Name: node},
		Status:     v1.NetworkGatewayNodeStatus{FloatingIPs: ips},
	}
}

func (f *fixture) get(t *testing.T, namespace, name string) *v1alpha1.PodEgress {
	t.Helper()
	v, err := f.s.PodEgress(namespace, name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// summary is a view in one line: policies, routes, other traffic.
func summary(v *v1alpha1.PodEgress) string {
	var parts []string
	for _, p := range v.Policies {
		parts = append(parts, fmt.Sprintf("policy %s %s %s@%s held by %v", p.Name, p.Verdict, p.EgressIP, p.GatewayNode, p.HeldBy))
	}
	for _, r := range v.Routes {
		parts = append(parts, fmt.Sprintf("route %s %s %s %s", r.Destination, r.Verdict, r.Policy, r.EgressIP))
	}
	for _, o := range v.Overlaps {
		parts = append(parts, fmt.Sprintf("overlap %s %s over %v: %s", o.Destination, o.Policy, o.Overridden, o.Rule))
	}
	return strings.Join(append(parts, "other "+v.OtherTraffic.NodeIP), "; ")
}

func TestPodEgress(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name, namespace, pod, want string
	}{
		{name: "spec: alice's frontend leaves for 8.8.8.0/24 with the gateway's first IP, via node2",
			namespace: "alice", pod: "frontend",
			want: "policy egress SNAT 198.51.100.100@node2 held by [node2]; route 8.8.8.0/24 SNAT egress 198.51.100.100; other 198.51.100.11"},
		{name: "spec: paul's frontend too", namespace: "paul", pod: "frontend",
			want: "policy egress SNAT 198.51.100.100@node2 held by [node2]; route 8.8.8.0/24 SNAT egress 198.51.100.100; other 198.51.100.13"},
		{name: "spec: a pod without role=frontend is only masqueraded", namespace: "alice", pod: "backend", want: "other 198.51.100.11"},
		{name: "spec: a frontend pod in a namespace the policy does not select", namespace: "bob", pod: "frontend", want: "other 198.51.100.13"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := f.get(t, tt.namespace, tt.pod)
			if got := summary(v); got != tt.want {
				t.Errorf("view:\n got %s\nwant %s", got, tt.want)
			}
			if v.Name != tt.pod || v.Namespace != tt.namespace || v.Labels["role"] == "" || v.ResourceVersion == "" {
				t.Errorf("metadata %+v does not name the pod with its labels and a resourceVersion", v.ObjectMeta)
			}
		})
	}
	if _, err := f.s.PodEgress("alice", "nope"); !apierrors.IsNotFound(err) {
		t.Errorf("an unknown pod: err = %v, want NotFound", err)
	}
}

// TestChanges changes one input at a time and checks every view that changed, and only
// those, is announced to a watcher.
func TestChanges(t *testing.T) {
	tests := []struct {
		name    string
		change  func(f *fixture)
		changed []string // namespace/name of the views a watch sees change
		view    string   // the view to check afterwards, and what it says
		want    string
	}{{
		name:    "a gateway failover moves every selected pod to the new node, and only them",
		change:  func(f *fixture) { f.gateway(map[string]string{"198.51.100.100": "node3"}) },
		changed: []string{"MODIFIED alice/frontend", "MODIFIED paul/frontend"},
		view:    "alice/frontend", want: "policy egress SNAT 198.51.100.100@node3 held by [node2]; route 8.8.8.0/24 SNAT egress 198.51.100.100; other 198.51.100.11",
	}, {
		name: "the new node's agent reports the IP",
		change: func(f *fixture) {
			f.s.SetNodeReport(report("node2"))
			f.s.SetNodeReport(report("node3", "198.51.100.100"))
		},
		changed: []string{"MODIFIED alice/frontend", "MODIFIED paul/frontend", "MODIFIED alice/frontend", "MODIFIED paul/frontend"},
		view:    "paul/frontend", want: "policy egress SNAT 198.51.100.100@node2 held by [node3]; route 8.8.8.0/24 SNAT egress 198.51.100.100; other 198.51.100.13",
	}, {
		name:    "the egress IP placed on no node: selected traffic is dropped, not leaked",
		change:  func(f *fixture) { f.gateway(map[string]string{}) },
		changed: []string{"MODIFIED alice/frontend", "MODIFIED paul/frontend"},
		view:    "alice/frontend", want: "policy egress Drop 198.51.100.100@ held by [node2]; route 8.8.8.0/24 Drop egress ; other 198.51.100.11",
	}, {
		name:    "a pod gains the label",
		change:  func(f *fixture) { f.setPod(newPod("alice", "backend", "node1", "198.18.1.11", "role", "frontend")) },
		changed: []string{"MODIFIED alice/backend"},
		view:    "alice/backend", want: "policy egress SNAT 198.51.100.100@node2 held by [node2]; route 8.8.8.0/24 SNAT egress 198.51.100.100; other 198.51.100.11",
	}, {
		name:    "a namespace gains the label",
		change:  func(f *fixture) { f.s.SetNamespace(newNamespace("bob", "user", "paul")) },
		changed: []string{"MODIFIED bob/frontend"},
		view:    "bob/frontend", want: "policy egress SNAT 198.51.100.100@node2 held by [node2]; route 8.8.8.0/24 SNAT egress 198.51.100.100; other 198.51.100.13",
	}, {
		name: "a newer policy for 0.0.0.0/0 and 8.8.8.0/24 overlaps: the older wins the equal prefix, the longest prefix wins inside",
		change: func(f *fixture) {
			f.s.SetGateway(networking.KindNetworkGatewayGroup, "kube-system", "wide", []string{"198.51.100.110"}, map[string]string{"198.51.100.110": "node1"}, nil, f.rv.next())
			p := specPolicy("wide", time.Minute, "wide", "0.0.0.0/0", "8.8.8.0/24")
			p.Spec.Sources = p.Spec.Sources[:1]
			f.s.SetPolicy(p)
		},
		changed: []string{"MODIFIED alice/frontend"},
		view:    "alice/frontend",
		want: "policy egress SNAT 198.51.100.100@node2 held by [node2]; policy wide SNAT 198.51.100.110@node1 held by []; " +
			"route 0.0.0.0/0 SNAT wide 198.51.100.110; route 8.8.8.0/24 SNAT egress 198.51.100.100; " +
			"overlap 8.8.8.0/24 egress over [wide]: on an equal prefix the older policy wins; other 198.51.100.11",
	}, {
		name:    "the policy is deleted",
		change:  func(f *fixture) { f.s.DeletePolicy(specPolicy("egress", time.Hour, "default")) },
		changed: []string{"MODIFIED alice/frontend", "MODIFIED paul/frontend"},
		view:    "alice/frontend", want: "other 198.51.100.11",
	}, {
		name:    "a pod is deleted",
		change:  func(f *fixture) { f.s.DeletePod(newPod("alice", "backend", "", "")) },
		changed: []string{"DELETED alice/backend"},
	}, {
		name:    "a new pod is added",
		change:  func(f *fixture) { f.setPod(newPod("alice", "new", "node2", "198.18.2.20", "role", "frontend")) },
		changed: []string{"ADDED alice/new"},
		view:    "alice/new", want: "policy egress SNAT 198.51.100.100@node2 held by [node2]; route 8.8.8.0/24 SNAT egress 198.51.100.100; other 198.51.100.12",
	}, {
		name: "a status-only update of a policy changes nothing",
		change: func(f *fixture) {
			p := specPolicy("egress", time.Hour, "default", "8.8.8.0/24")
			p.Status.EgressIP = "x"
			f.s.SetPolicy(p)
		},
		changed: nil,
	}, {
		name: "a node heartbeat changes nothing",
		change: func(f *fixture) {
			n := newNode("node1", "198.51.100.11", "198.18.1.0/24")
			n.ResourceVersion = f.rv.next()
			f.s.SetNode(n)
		},
		changed: nil,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			list, err := f.s.PodEgresses("", nil)
			if err != nil {
				t.Fatal(err)
			}
			w, err := f.s.WatchPodEgresses("", WatchOptions{ResourceVersion: list.ResourceVersion}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Stop()
			tt.change(f)
			got := drain(t, w)
			if diff := cmp.Diff(tt.changed, got); diff != "" {
				t.Errorf("watch events (-want +got):\n%s", diff)
			}
			if tt.view != "" {
				ns, name, _ := strings.Cut(tt.view, "/")
				if got := summary(f.get(t, ns, name)); got != tt.want {
					t.Errorf("%s:\n got %s\nwant %s", tt.view, got, tt.want)
				}
			}
		})
	}
}

// drain reads events until none comes for a moment.
func drain(t *testing.T, w watch.Interface) []string {
	t.Helper()
	var got []string
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				return got
			}
			v := ev.Object.(*v1alpha1.PodEgress)
			got = append(got, fmt.Sprintf("%s %s/%s", ev.Type, v.Namespace, v.Name))
		case <-time.After(100 * time.Millisecond):
			return got
		}
	}
}

func TestWatch(t *testing.T) {
	f := newFixture(t)
	frontend := func(v *v1alpha1.PodEgress) bool { return v.Labels["role"] == "frontend" }
	start, _ := f.s.PodEgresses("", nil)

	t.Run("from no resourceVersion: every current view, filtered", func(t *testing.T) {
		w, err := f.s.WatchPodEgresses("alice", WatchOptions{}, frontend)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		if diff := cmp.Diff([]string{"ADDED alice/frontend"}, drain(t, w)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("a view that stops matching the label selector is deleted for the watcher", func(t *testing.T) {
		w, err := f.s.WatchPodEgresses("alice", WatchOptions{ResourceVersion: start.ResourceVersion}, frontend)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		f.setPod(newPod("alice", "frontend", "node1", "198.18.1.10", "role", "other"))
		f.setPod(newPod("alice", "frontend", "node1", "198.18.1.10", "role", "frontend"))
		if diff := cmp.Diff([]string{"DELETED alice/frontend", "ADDED alice/frontend"}, drain(t, w)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("a resumed watch replays what it missed", func(t *testing.T) {
		w, err := f.s.WatchPodEgresses("", WatchOptions{ResourceVersion: start.ResourceVersion}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		if diff := cmp.Diff([]string{"MODIFIED alice/frontend", "MODIFIED alice/frontend"}, drain(t, w)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("watch-list: the initial views, then a bookmark that ends them", func(t *testing.T) {
		w, err := f.s.WatchPodEgresses("paul", WatchOptions{SendInitialEvents: true, Bookmarks: true}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		var got []string
		for range 2 {
			ev := <-w.ResultChan()
			got = append(got, string(ev.Type)+" "+ev.Object.(*v1alpha1.PodEgress).Annotations[metav1.InitialEventsAnnotationKey])
		}
		if diff := cmp.Diff([]string{"ADDED ", "BOOKMARK true"}, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("a resourceVersion older than the history is gone (410)", func(t *testing.T) {
		small := New(nil, 2)
		small.Synced()
		for i := range 5 {
			p := newPod("ns", fmt.Sprint(i), "", "")
			p.ResourceVersion = fmt.Sprint(10 + i)
			small.SetPod(p)
		}
		_, err := small.WatchPodEgresses("", WatchOptions{ResourceVersion: "11"}, nil)
		if !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
			t.Errorf("err = %v, want 410 Gone", err)
		}
		w, err := small.WatchPodEgresses("", WatchOptions{ResourceVersion: "12"}, nil)
		if err != nil {
			t.Fatalf("resuming within the history: %v", err)
		}
		defer w.Stop()
		if got := drain(t, w); len(got) != 2 {
			t.Errorf("resumed events %v, want the last 2", got)
		}
	})
}

func TestNotSynced(t *testing.T) {
	s := New(nil, 0)
	s.SetPod(newPod("alice", "frontend", "node1", "198.18.1.10"))
	if _, err := s.PodEgress("alice", "frontend"); !apierrors.IsServiceUnavailable(err) {
		t.Errorf("before sync: err = %v, want 503", err)
	}
	s.Synced()
	if _, err := s.PodEgress("alice", "frontend"); err != nil {
		t.Errorf("after sync: %v", err)
	}
}

func TestPolicyViews(t *testing.T) {
	f := newFixture(t)
	v, err := f.s.PolicyView("egress")
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%s %s@%s %v pods=%d gateway=%s/%s", v.Verdict, v.EgressIP, v.GatewayNode, v.Destinations, v.SelectedPods, v.Gateway.Namespace, v.Gateway.Name)
	if want := "SNAT 198.51.100.100@node2 [8.8.8.0/24] pods=2 gateway=kube-system/default"; got != want {
		t.Errorf("policy view %q, want %q", got, want)
	}
	pods, err := f.s.PolicyPods("egress")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range pods.Items {
		names = append(names, p.Namespace+"/"+p.Name)
	}
	if diff := cmp.Diff([]string{"alice/frontend", "paul/frontend"}, names); diff != "" {
		t.Errorf("pods (-want +got):\n%s", diff)
	}
	if _, err := f.s.PolicyView("nope"); !apierrors.IsNotFound(err) {
		t.Errorf("unknown policy: err = %v, want NotFound", err)
	}
	counts, err := f.s.PolicyPodsByNamespace("egress")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]int32{"alice": 1, "paul": 1}, counts); diff != "" {
		t.Errorf("pods by namespace (-want +got):\n%s", diff)
	}
	if _, err := f.s.PolicyPodsByNamespace("nope"); !apierrors.IsNotFound(err) {
		t.Errorf("unknown policy: err = %v, want NotFound", err)
	}
}

// TestPolicyViewStandby: the view names the egress IP's standby, and the state of its
// copy of the connections as the holder reports it; None while the holder reports none.
func TestPolicyViewStandby(t *testing.T) {
	f := newFixture(t)
	standby := func() string {
		v, err := f.s.PolicyView("egress")
		if err != nil {
			t.Fatal(err)
		}
		if v.Standby == nil {
			return "<none>"
		}
		return fmt.Sprintf("%s %s %d %dms", v.Standby.Node, v.Standby.Copy, v.Standby.Entries, v.Standby.LagMilliseconds)
	}
	if got := standby(); got != "<none>" {
		t.Errorf("no standby named: the view shows %q", got)
	}
	f.gatewayWith(map[string]string{"198.51.100.100": "node2"}, map[string]string{"198.51.100.100": "node3"})
	if got, want := standby(), "node3 None 0 0ms"; got != want {
		t.Errorf("standby named, no copy reported: %q, want %q", got, want)
	}
	r := report("node2", "198.51.100.100")
	r.Status.StandbyCopies = []v1.StandbyCopy{
		{IP: "198.51.100.100", Standby: "node3", State: v1.CopyInSync, Entries: 1200, LagMilliseconds: 4},
		{IP: "198.51.100.101", Standby: "node1", State: v1.CopyBehind},
	}
	f.s.SetNodeReport(r)
	if got, want := standby(), "node3 InSync 1200 4ms"; got != want {
		t.Errorf("the holder reports its copy: %q, want %q", got, want)
	}
	r.Status.StandbyCopies[0].Standby = "node1" // a copy to another node says nothing of node3's
	f.s.SetNodeReport(r)
	if got, want := standby(), "node3 None 0 0ms"; got != want {
		t.Errorf("the holder copies to another node: %q, want %q", got, want)
	}
}

func TestPreviewInput(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name      string
		namespace string
		pod       string
		ip        string
		wantPod   string
		wantPeer  bool
		wantErr   func(error) bool
	}{
		{name: "by name", namespace: "alice", pod: "frontend", wantPod: "alice/frontend"},
		{name: "by IP", ip: "198.18.3.10", wantPod: "paul/frontend"},
		{name: "unknown name", namespace: "alice", pod: "nope", wantErr: apierrors.IsNotFound},
		{name: "unknown IP", ip: "198.18.9.9", wantErr: apierrors.IsNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ip netip.Addr
			if tt.ip != "" {
				ip = netip.MustParseAddr(tt.ip)
			}
			in, err := f.s.PreviewInput(tt.namespace, tt.pod, ip, netip.MustParseAddr("198.18.1.11"))
			if tt.wantErr != nil {
				if !tt.wantErr(err) {
					t.Errorf("err = %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := in.Pod.Namespace + "/" + in.Pod.Name; got != tt.wantPod {
				t.Errorf("pod %s, want %s", got, tt.wantPod)
			}
			if in.Peer == nil || in.Peer.Pod.Name != "backend" {
				t.Errorf("the destination 198.18.1.11 is alice/backend; peer = %+v", in.Peer)
			}
			if in.Policies == nil || len(in.Policies.Items()) != 1 || in.NodeIP.String() == "invalid IP" {
				t.Errorf("input lacks the policies or the node IP: %+v", in)
			}
		})
	}
}

// TestSlowWatcherIsClosed: a client that reads nothing while more than a queue of changes
// happens is closed and told to list again (410), and its watcher lets go of every view it
// held, whether it was stuck in its initial list or after it; a client that keeps within
// its queue sees every change.
func TestSlowWatcherIsClosed(t *testing.T) {
	tests := []struct {
		name       string
		resume     bool // from the current resourceVersion, not from an initial list
		changes    int
		wantClosed bool
	}{
		{name: "stuck in its initial list", changes: watchQueue + 1, wantClosed: true},
		// One change is in the watcher's hands, a queue of them behind it: one more is too many.
		{name: "stuck after it caught up", resume: true, changes: watchQueue + 2, wantClosed: true},
		{name: "behind by less than its queue", resume: true, changes: watchQueue - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(nil, 0)
			s.Synced()
			var r rv
			set := func(i int) {
				p := newPod("ns", "p", "", "", "n", fmt.Sprint(i))
				p.ResourceVersion = r.next()
				s.SetPod(p)
			}
			set(0)
			opts := WatchOptions{}
			if tt.resume {
				opts.ResourceVersion = fmt.Sprint(r.n)
			}
			w, err := s.WatchPodEgresses("", opts, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Stop()
			for i := range tt.changes {
				set(i + 1)
			}
			var got []watch.Event
			timeout := time.After(10 * time.Second)
		read:
			for {
				select {
				case ev, ok := <-w.ResultChan():
					if !ok {
						break read
					}
					got = append(got, ev)
					if !tt.wantClosed && len(got) == tt.changes {
						break read
					}
				case <-timeout:
					t.Fatalf("after 10s: %d events, the watch neither ended nor delivered all", len(got))
				}
			}
			if !tt.wantClosed {
				if last := got[len(got)-1]; last.Type != watch.Modified || last.Object.(*v1alpha1.PodEgress).Labels["n"] != fmt.Sprint(tt.changes) {
					t.Errorf("the last event %s %v, want the last change", last.Type, last.Object)
				}
				return
			}
			// Nothing that was queued reaches the client: only the news that it must list.
			if len(got) != 1 || got[0].Type != watch.Error {
				t.Fatalf("events %d, the first %s; want one ERROR", len(got), got[0].Type)
			}
			status, ok := got[0].Object.(*metav1.Status)
			if !ok || status.Code != 410 || !strings.Contains(status.Message, "list again") {
				t.Errorf("the error %+v, want 410 telling the client to list again", got[0].Object)
			}
			ww := w.(*watcher)
			if len(ww.queue) != 0 || ww.initial != nil {
				t.Errorf("the closed watcher still holds %d queued events and %d initial ones", len(ww.queue), len(ww.initial))
			}
		})
	}
}

// TestLearnedCluster: the views never steer what the node agents never steer: every
// Node's InternalIP and the subnets its agent reports (none shorter than /8), learned,
// and a deleted report's subnets no more.
func TestLearnedCluster(t *testing.T) {
	f := newFixture(t)
	r := report("node1", "198.51.100.101")
	r.Status.Interfaces = []v1.NodeInterface{{Name: "eth1", Subnets: []string{"10.20.0.5/24", "0.0.0.0/0"}}}
	f.s.SetNodeReport(r)
	want := []string{"10.20.0.0/24", "198.18.1.0/24", "198.18.2.0/24", "198.18.3.0/24", "198.51.100.0/24",
		"198.51.100.11/32", "198.51.100.12/32", "198.51.100.13/32"}
	if got := fmt.Sprint(f.s.in.cluster()); got != fmt.Sprint(want) {
		t.Errorf("never steered: %s, want %v", got, want)
	}
	f.s.DeleteNodeReport(r)
	if got := fmt.Sprint(f.s.in.cluster()); strings.Contains(got, "10.20.0.0/24") {
		t.Errorf("never steered after the report went: %s, still 10.20.0.0/24", got)
	}
}
