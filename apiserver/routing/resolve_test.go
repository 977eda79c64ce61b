package routing

import (
	"testing"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
)

func TestResolve(t *testing.T) {
	gateways := func(namespace, name string) ([]string, bool) {
		ips, ok := map[string][]string{
			"kube-system/default": {"192.168.1.100", "192.168.1.101", "192.168.1.102"},
			"kube-system/empty":   {},
			"kube-system/lonely":  {"192.168.1.120"},
		}[namespace+"/"+name]
		return ips, ok
	}
	holders := func(ip string) (string, bool) {
		node, ok := map[string]string{"192.168.1.100": "worker1", "192.168.1.101": "worker2", "192.168.1.110": "worker2"}[ip]
		return node, ok
	}
	ref := func(name string) *v1.GatewayReference {
		return &v1.GatewayReference{Name: name, Namespace: "kube-system"}
	}
	tests := []struct {
		name string
		spec v1.EgressNATPolicySpec
		want Resolution
	}{{
		name: "the first floating IP of the gateway, on the node that holds it",
		spec: v1.EgressNATPolicySpec{GatewayRef: ref("default")},
		want: Resolution{EgressIP: "192.168.1.100", Node: "worker1", Reason: ReasonReady},
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
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Resolve(&tt.spec, gateways, holders)
			if got.EgressIP != tt.want.EgressIP || got.Node != tt.want.Node || got.Reason != tt.want.Reason {
				t.Errorf("Resolve() = %+v, want %+v", got, tt.want)
			}
			if got.Message == "" {
				t.Error("no message")
			}
			if got.Ready() != (tt.want.Reason == ReasonReady) {
				t.Errorf("Ready() = %v", got.Ready())
			}
		})
	}
}
