package routing

import (
	"slices"
	"strings"
	"testing"

	"github.com/egressgw/egressgw/apiserver/apis/networking"
	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
)

func group(namespace, name string, placed map[string]string, ips ...string) Gateway {
	return Gateway{Ref: networking.ObjectRef{Kind: networking.KindNetworkGatewayGroup, Namespace: namespace, Name: name}, FloatingIPs: ips, Placed: placed}
}

func legacy(namespace, name string, placed map[string]string, ips ...string) Gateway {
	return Gateway{Ref: networking.ObjectRef{Kind: networking.KindAnthosNetworkGateway, Namespace: namespace, Name: name}, FloatingIPs: ips, Placed: placed}
}

func TestResolve(t *testing.T) {
	gateways := NewGateways([]Gateway{
		group("kube-system", "default", map[string]string{"192.168.1.100": "worker1", "192.168.1.101": "worker2"}, "192.168.1.100", "192.168.1.101", "192.168.1.102"),
		group("kube-system", "empty", nil),
		group("kube-system", "lonely", nil, "192.168.1.120"),
		// The migration case: a legacy gateway of the same name as a NetworkGatewayGroup,
		// listed first so that a lookup by name that took the last one would pick it.
		legacy("kube-system", "moving", map[string]string{"192.168.1.130": "worker3"}, "192.168.1.130"),
		group("kube-system", "moving", map[string]string{"192.168.1.140": "worker4"}, "192.168.1.140"),
		legacy("kube-system", "old", map[string]string{"192.168.1.110": "worker2"}, "192.168.1.110", "192.168.1.111"),
	})
	ref := func(name string) *v1.GatewayReference {
		return &v1.GatewayReference{Name: name, Namespace: "kube-system"}
	}
	tests := []struct {
		name    string
		spec    v1.EgressNATPolicySpec
		holders Holders
		want    Resolution
		message string // a part of the message, if it matters
	}{{
		name: "the first floating IP of the gateway, on the node its status places it on",
		spec: v1.EgressNATPolicySpec{GatewayRef: ref("default")},
		want: Resolution{EgressIP: "192.168.1.100", Node: "worker1", Reason: ReasonReady},
	}, {
		name:    "the holders given win over the status",
		spec:    v1.EgressNATPolicySpec{GatewayRef: ref("default")},
		holders: func(string) (string, bool) { return "worker9", true },
		want:    Resolution{EgressIP: "192.168.1.100", Node: "worker9", Reason: ReasonReady},
	}, {
		name: "a legacy policy uses its egressSourceIP",
		spec: v1.EgressNATPolicySpec{EgressSourceIP: "192.168.1.110"},
		want: Resolution{EgressIP: "192.168.1.110", Node: "worker2", Reason: ReasonReady},
	}, {
		name: "a legacy egressSourceIP that no node holds",
		spec: v1.EgressNATPolicySpec{EgressSourceIP: "192.168.1.111"},
		want: Resolution{EgressIP: "192.168.1.111", Reason: ReasonUnknownEgressIP},
	}, {
		name: "a gateway whose first IP no node holds",
		spec: v1.EgressNATPolicySpec{GatewayRef: ref("lonely")},
		want: Resolution{EgressIP: "192.168.1.120", Reason: ReasonUnknownEgressIP},
	}, {
		name: "a gateway that does not exist",
		spec: v1.EgressNATPolicySpec{GatewayRef: ref("nope")},
		want: Resolution{Reason: ReasonGatewayNotFound},
	}, {
		name: "a gateway without floating IPs",
		spec: v1.EgressNATPolicySpec{GatewayRef: ref("empty")},
		want: Resolution{Reason: ReasonNoFloatingIP},
	}, {
		name: "a gatewayRef names the NetworkGatewayGroup, never the legacy gateway of its name",
		spec: v1.EgressNATPolicySpec{GatewayRef: ref("moving")},
		want: Resolution{EgressIP: "192.168.1.140", Node: "worker4", Reason: ReasonReady},
	}, {
		name:    "a gatewayRef naming only a legacy gateway says why it is not found",
		spec:    v1.EgressNATPolicySpec{GatewayRef: ref("old")},
		want:    Resolution{Reason: ReasonGatewayNotFound},
		message: "AnthosNetworkGateway kube-system/old does, but a gatewayRef names a NetworkGatewayGroup only",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Resolve(&tt.spec, gateways, tt.holders)
			if got.EgressIP != tt.want.EgressIP || got.Node != tt.want.Node || got.Reason != tt.want.Reason {
				t.Errorf("Resolve() = %+v, want %+v", got, tt.want)
			}
			if got.Message == "" || !strings.Contains(got.Message, tt.message) {
				t.Errorf("message %q, want one that says %q", got.Message, tt.message)
			}
			if got.Ready() != (tt.want.Reason == ReasonReady) {
				t.Errorf("Ready() = %v", got.Ready())
			}
		})
	}
}

func TestGateways(t *testing.T) {
	g := NewGateways([]Gateway{
		group("kube-system", "b", map[string]string{"10.0.0.2": "n2", "10.0.0.9": "stale"}, "10.0.0.2", "10.0.0.3"),
		legacy("kube-system", "a", nil, "10.0.0.1", "10.0.0.3", "not-an-ip"),
	})
	if _, ok := g.Placed("10.0.0.9"); ok {
		t.Error("a status entry for an IP the spec does not list counts as a placement")
	}
	if node, _ := g.Placed("10.0.0.2"); node != "n2" {
		t.Errorf("10.0.0.2 placed on %q, want n2", node)
	}
	// 10.0.0.3 is listed twice: every caller names the same owner.
	if owner, _ := g.Owner("10.0.0.3"); owner.Kind != networking.KindAnthosNetworkGateway || owner.Name != "a" {
		t.Errorf("10.0.0.3 owned by %v, want the first in kind order, AnthosNetworkGateway kube-system/a", owner)
	}
	var got []string
	for _, ip := range g.FloatingIPs() {
		got = append(got, ip.String())
	}
	if want := []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}; !slices.Equal(got, want) {
		t.Errorf("FloatingIPs() = %v, want %v", got, want)
	}
}
