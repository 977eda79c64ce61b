package controller

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/controller/liveness"
)

// gnode builds a node: Up or not, its spec and status IPs, and whether its status has
// caught up with its spec.
func gnode(up bool, spec, held []string, caughtUp bool, shown ...string) *grantNode {
	obj := &v1.NetworkGatewayNode{ObjectMeta: metav1.ObjectMeta{Generation: 4}}
	obj.Status.ObservedGeneration = 4
	if !caughtUp {
		obj.Status.ObservedGeneration = 3
	}
	n := &grantNode{obj: obj, up: up, spec: map[netip.Addr]bool{}, held: map[netip.Addr]bool{}, shown: map[netip.Addr]bool{}}
	for _, s := range shown {
		n.shown[netip.MustParseAddr(s)] = true
	}
	for _, s := range spec {
		n.spec[netip.MustParseAddr(s)] = true
	}
	for _, s := range held {
		n.held[netip.MustParseAddr(s)] = true
	}
	return n
}

func TestPlanGrants(t *testing.T) {
	const x = "198.51.100.100"
	ip := netip.MustParseAddr(x)
	tests := []struct {
		name      string
		target    string // "" leaves x out of the assignment
		nodes     map[string]*grantNode
		wantSpecs string
		wantAt    string
		waiting   int
	}{{
		name:      "a new IP is granted at once",
		target:    "b",
		nodes:     map[string]*grantNode{"a": gnode(true, nil, nil, true), "b": gnode(true, nil, nil, true)},
		wantSpecs: "a=[] b=[198.51.100.100]", wantAt: "b",
	}, {
		name:      "an IP stays where it is",
		target:    "a",
		nodes:     map[string]*grantNode{"a": gnode(true, []string{x}, []string{x}, true), "b": gnode(true, nil, nil, true)},
		wantSpecs: "a=[198.51.100.100] b=[]", wantAt: "a",
	}, {
		name:      "a planned move first takes the IP away from the old node, which keeps it meanwhile",
		target:    "b",
		nodes:     map[string]*grantNode{"a": gnode(true, []string{x}, []string{x}, true), "b": gnode(true, nil, nil, true)},
		wantSpecs: "a=[] b=[]", wantAt: "a", waiting: 1,
	}, {
		name:      "the old node's spec lost the IP but it has not said it let go",
		target:    "b",
		nodes:     map[string]*grantNode{"a": gnode(true, nil, []string{x}, true), "b": gnode(true, nil, nil, true)},
		wantSpecs: "a=[] b=[]", wantAt: "a", waiting: 1,
	}, {
		name:      "the old node has not caught up with the spec that took the IP away",
		target:    "b",
		nodes:     map[string]*grantNode{"a": gnode(true, nil, nil, false, x), "b": gnode(true, nil, nil, true)},
		wantSpecs: "a=[] b=[]", wantAt: "a", waiting: 1,
	}, {
		name:      "a node behind its spec does not block IPs it never had",
		target:    "b",
		nodes:     map[string]*grantNode{"a": gnode(true, nil, nil, false), "b": gnode(true, nil, nil, true)},
		wantSpecs: "a=[] b=[198.51.100.100]", wantAt: "b",
	}, {
		name:      "once the old node says it let go, the new node gets it",
		target:    "b",
		nodes:     map[string]*grantNode{"a": gnode(true, nil, nil, true), "b": gnode(true, nil, nil, true)},
		wantSpecs: "a=[] b=[198.51.100.100]", wantAt: "b",
	}, {
		name:      "a Down node's grant has lapsed: the IP moves at once",
		target:    "b",
		nodes:     map[string]*grantNode{"a": gnode(false, []string{x}, []string{x}, false), "b": gnode(true, nil, nil, true)},
		wantSpecs: "a=[] b=[198.51.100.100]", wantAt: "b",
	}, {
		name:      "an IP no gateway lists any more is taken from every node",
		target:    "",
		nodes:     map[string]*grantNode{"a": gnode(true, []string{x}, []string{x}, true)},
		wantSpecs: "a=[]", wantAt: "",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assignment := map[netip.Addr]string{}
			if tt.target != "" {
				assignment[ip] = tt.target
			}
			plan := planGrants(assignment, tt.nodes)
			var specs string
			for _, name := range []string{"a", "b"} {
				if ips, ok := plan.specs[name]; ok {
					specs += fmt.Sprintf(" %s=%v", name, ips)
				}
			}
			if specs[1:] != tt.wantSpecs {
				t.Errorf("specs %s, want %s", specs[1:], tt.wantSpecs)
			}
			if got := plan.effective[ip]; got != tt.wantAt {
				t.Errorf("%s is on %q, want %q", x, got, tt.wantAt)
			}
			if plan.waiting != tt.waiting {
				t.Errorf("%d moves wait, want %d", plan.waiting, tt.waiting)
			}
		})
	}
}

// The status comparisons in gatewayStatus and policyStatus (status.go) name every field; a
// new status field must be added to them, or its changes would never be written.
func TestStatusComparisonsCoverEveryField(t *testing.T) {
	for _, c := range []struct {
		typ    reflect.Type
		fields int
	}{
		{reflect.TypeFor[v1.NetworkGatewayGroupStatus](), 4},
		{reflect.TypeFor[v1.EgressNATPolicyStatus](), 3},
	} {
		if got := c.typ.NumField(); got != c.fields {
			t.Errorf("%s has %d fields, and its comparison knows %d: compare the new ones too", c.typ, got, c.fields)
		}
	}
}

// TestNodeBackFromDownClaimsNothing: a node that was Down comes back with the report its
// killed agent wrote, which still says it holds an IP that has since moved. Its agent
// dropped that IP when its grant lapsed, so the claim must not block the IP's new node,
// nor pull the IP back; once its new agent reports on its current spec, its claims
// count again.
func TestNodeBackFromDownClaimsNothing(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	tracker := liveness.NewTracker(clk, 100*time.Millisecond)
	lapsed := map[string]bool{}
	// grantNodes as a pass gathers its inputs: liveness read once, lapsed noted.
	grantNodesNow := func(reports []v1.NetworkGatewayNode, current map[netip.Addr]string) map[string]*grantNode {
		up := map[string]bool{}
		for _, r := range reports {
			up[r.Name] = tracker.Up(r.Name)
		}
		noteLapsed(lapsed, reports, up)
		return grantNodes(reports, up, lapsed, current)
	}
	ip := netip.MustParseAddr("198.51.100.100")
	report := func(name string, generation, observed int64, spec, held []string) v1.NetworkGatewayNode {
		return v1.NetworkGatewayNode{ObjectMeta: metav1.ObjectMeta{Name: name, Generation: generation},
			Spec:   v1.NetworkGatewayNodeSpec{FloatingIPs: spec},
			Status: v1.NetworkGatewayNodeStatus{FloatingIPs: held, ObservedGeneration: observed}}
	}
	renew := func(nodes ...string) {
		for _, n := range nodes {
			tracker.Observe(n, fmt.Sprint(clk.Now().UnixNano()), time.Second)
		}
	}
	renew("node1", "node2")
	clk.Step(2 * time.Second) // node1 stops renewing, node2 renews: node1 is Down
	renew("node2")
	// The pass that moves the IP: node1's spec loses it (generation 6), node2 gets it.
	down := grantNodesNow([]v1.NetworkGatewayNode{
		report("node1", 5, 5, []string{ip.String()}, []string{ip.String()}),
		report("node2", 3, 3, nil, nil),
	}, map[netip.Addr]string{ip: "node1"})
	if got := planGrants(map[netip.Addr]string{ip: "node2"}, down); got.effective[ip] != "node2" {
		t.Fatalf("with node1 Down, %s is on %q, want node2", ip, got.effective[ip])
	}
	// node1's new agent renews before it reports: its report is the old one.
	renew("node1", "node2")
	back := grantNodesNow([]v1.NetworkGatewayNode{
		report("node1", 6, 5, nil, []string{ip.String()}),
		report("node2", 4, 4, []string{ip.String()}, []string{ip.String()}),
	}, map[netip.Addr]string{ip: "node2"})
	if got := planGrants(map[netip.Addr]string{ip: "node2"}, back); got.effective[ip] != "node2" || got.waiting != 0 || !slices.Contains(got.specs["node2"], ip) {
		t.Errorf("node1's stale report blocks %s: effective %q, %d waiting, node2 granted %v", ip, got.effective[ip], got.waiting, got.specs["node2"])
	}
	// Once node1 reports on generation 6, what it says counts again.
	current := grantNodesNow([]v1.NetworkGatewayNode{
		report("node1", 6, 6, nil, []string{ip.String()}),
		report("node2", 4, 4, []string{ip.String()}, []string{ip.String()}),
	}, map[netip.Addr]string{ip: "node2"})
	if !current["node1"].held[ip] {
		t.Errorf("node1's current report says it holds %s, and the controller does not believe it", ip)
	}
}
