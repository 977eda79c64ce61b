package nodeagent

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egressgw/egressgw/apiserver/apis/networking"
	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/apiserver/routing"
	"github.com/egressgw/egressgw/test/testenv"
)

func pod(ns, name, ip string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec:       corev1.PodSpec{NodeName: "worker1"},
		Status:     corev1.PodStatus{PodIP: ip, Phase: corev1.PodRunning},
	}
}

func specPolicy() *v1.EgressNATPolicy {
	return &v1.EgressNATPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "egress"},
		Spec: v1.EgressNATPolicySpec{
			Sources: []v1.EgressSource{{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"user": "alice"}},
				PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"role": "frontend"}},
			}},
			Action:       v1.ActionSNAT,
			Destinations: []v1.Destination{{CIDR: "203.0.113.0/24"}},
			GatewayRef:   &v1.GatewayReference{Name: "default", Namespace: "kube-system"},
		},
	}
}

func TestDesired(t *testing.T) {
	base := snapshot{
		node:     "worker1",
		policies: []*v1.EgressNATPolicy{specPolicy()},
		gateways: []routing.Gateway{{Ref: networking.ObjectRef{Kind: networking.KindNetworkGatewayGroup, Namespace: "kube-system", Name: "default"},
			FloatingIPs: []string{"198.51.100.100", "198.51.100.101", "198.51.100.102"},
			Placed:      map[string]string{"198.51.100.100": "worker2", "198.51.100.101": "worker1", "198.51.100.102": "worker1"}}},
		granted: []string{"198.51.100.102", "198.51.100.101"},
		pods: []*corev1.Pod{
			pod("alice", "fe", "198.18.1.10", map[string]string{"role": "frontend"}),
			pod("alice", "be", "198.18.1.11", map[string]string{"role": "backend"}),
			pod("alice", "pending", "", map[string]string{"role": "frontend"}),
		},
		namespaces: map[string]map[string]string{"alice": {"user": "alice"}},
		cluster:    []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("198.51.100.0/24")},
	}
	d, err := base.desired(routing.NewTableBuilder())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		got  any
		want any
	}{
		{name: "the IPs granted in the node's spec are assigned",
			got: d.assigned, want: []netip.Addr{netip.MustParseAddr("198.51.100.101"), netip.MustParseAddr("198.51.100.102")}},
		{name: "pods with an IP are in the table", got: len(d.table.Pods), want: 2},
		{name: "the selected pod steers to the gateway's first IP, held by worker2",
			got: verdictFor(d.table, "198.18.1.10", "203.0.113.10"), want: "SNAT 198.51.100.100"},
		{name: "the other pod is not steered", got: verdictFor(d.table, "198.18.1.11", "203.0.113.10"), want: "pass"},
		{name: "the backstop covers the policy destinations", got: d.destinations, want: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}},
		{name: "a gateway may SNAT to the policy's egress IP its destinations, whichever node holds it",
			got: d.snatDestinations, want: map[netip.Addr][]netip.Prefix{netip.MustParseAddr("198.51.100.100"): {netip.MustParsePrefix("203.0.113.0/24")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if g, w := fmt.Sprint(tt.got), fmt.Sprint(tt.want); g != w {
				t.Errorf("got %s, want %s", g, w)
			}
		})
	}

	t.Run("an unplaced egress IP drops the selected pod's traffic", func(t *testing.T) {
		s := base
		s.gateways = []routing.Gateway{{Ref: networking.ObjectRef{Kind: networking.KindNetworkGatewayGroup, Namespace: "kube-system", Name: "default"}, FloatingIPs: []string{"198.51.100.100"}}}
		d, err := s.desired(routing.NewTableBuilder())
		if err != nil {
			t.Fatal(err)
		}
		if got := verdictFor(d.table, "198.18.1.10", "203.0.113.10"); got != "Drop" {
			t.Errorf("got %s, want Drop", got)
		}
	})
}

func verdictFor(t routing.Table, src, dst string) string {
	set, ok := t.Pods[netip.MustParseAddr(src)]
	if !ok {
		set = routing.UnknownSet
	}
	var routes []routing.Route
	for _, r := range t.Sets[set] {
		routes = append(routes, r.Route)
	}
	r, found := routing.Lookup(routes, netip.MustParseAddr(dst))
	if !found {
		return "pass"
	}
	for _, tr := range t.Sets[set] {
		if tr.Prefix == r.Prefix && tr.Verdict == routing.SNAT {
			return "SNAT " + t.Egress[tr.EgressID].String()
		}
	}
	return r.Verdict.String()
}

var update = flag.Bool("update", false, "rewrite "+renderedTable+" from the renderer")

const renderedTable = "testdata/table.nft"

// TestNftablesRender checks the rendered table with nft itself, in a throwaway network
// namespace, so a syntax error cannot reach a node.
func TestNftablesRender(t *testing.T) {
	n := nftState{
		PodCIDRs:     []netip.Prefix{netip.MustParsePrefix("198.18.1.0/24")},
		Cluster:      []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("198.18.1.0/24")},
		Destinations: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("0.0.0.0/0")},
		SNAT:         map[uint32]netip.Addr{1: netip.MustParseAddr("198.51.100.100"), 7: netip.MustParseAddr("198.51.100.101")},
	}
	text := n.render()
	for _, want := range []string{"0xd0010000 : 198.51.100.100", "0xd0070000 : 198.51.100.101", "priority srcnat - 1", "ct zone set 2640", "ip saddr != @egress_ips counter drop"} {
		if !strings.Contains(text, want) {
			t.Errorf("rendered table lacks %q:\n%s", want, text)
		}
	}
	// The image test of hack/images applies this table with the agent image's own nft.
	if *update {
		if err := os.WriteFile(renderedTable, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if golden, err := os.ReadFile(renderedTable); err != nil || string(golden) != text {
		t.Errorf("%s is not the table rendered here (run go test ./nodeagent -run TestNftablesRender -update): %v", renderedTable, err)
	}
	empty := nftState{}.render()
	testenv.RequireRoot(t, "network namespaces, nftables")
	ns := fmt.Sprintf("egwnft-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	for _, text := range []string{text, empty, text} { // applying twice replaces, not appends
		cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(text)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft rejected the table: %v: %s\n%s", err, out, text)
		}
	}
	out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "chain", "ip", "egressgw", "postrouting").CombinedOutput()
	if err != nil {
		t.Fatalf("listing: %v: %s", err, out)
	}
	if got := strings.Count(string(out), " snat to "); got != 2 {
		t.Errorf("postrouting has %d snat rules after three applies, want 2:\n%s", got, out)
	}
}
