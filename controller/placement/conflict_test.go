package placement

import (
	"maps"
	"net/netip"
	"slices"
	"testing"
)

func TestConflicts(t *testing.T) {
	legacy := ngg("legacy", 0, "192.168.1.100")
	legacy.ID.Kind = KindAnthosNetworkGateway
	sameTimeOtherKind := ngg("twin", 5, "192.168.1.100")
	sameTimeOtherKind.ID.Kind = KindAnthosNetworkGateway
	otherNamespace := ngg("z", 5, "192.168.1.100")
	otherNamespace.ID.Namespace = "a-namespace"

	tests := []struct {
		name           string
		gateways       []Gateway
		want           []Conflict
		wantAssignment map[netip.Addr]string
	}{{
		name:           "the older gateway keeps the IP; the newer one's other IPs are still placed",
		gateways:       []Gateway{ngg("new", 1, "192.168.1.100", "192.168.1.101"), ngg("old", 0, "192.168.1.100")},
		want:           []Conflict{{IP: addr("192.168.1.100"), Winner: ngg("old", 0).ID, Loser: ngg("new", 0).ID}},
		wantAssignment: on("192.168.1.100", "worker1", "192.168.1.101", "worker2"),
	}, {
		name:           "at the same creation time, namespace then name decides",
		gateways:       []Gateway{ngg("a", 5, "192.168.1.100"), otherNamespace},
		want:           []Conflict{{IP: addr("192.168.1.100"), Winner: otherNamespace.ID, Loser: ngg("a", 0).ID}},
		wantAssignment: on("192.168.1.100", "worker1"),
	}, {
		name:           "with namespace, name and time equal, the kind decides",
		gateways:       []Gateway{ngg("twin", 5, "192.168.1.100"), sameTimeOtherKind},
		want:           []Conflict{{IP: addr("192.168.1.100"), Winner: sameTimeOtherKind.ID, Loser: ngg("twin", 0).ID}},
		wantAssignment: on("192.168.1.100", "worker1"),
	}, {
		name:     "three gateways on one IP: two losers, oldest first",
		gateways: []Gateway{ngg("c", 3, "192.168.1.100"), ngg("a", 1, "192.168.1.100"), ngg("b", 2, "192.168.1.100")},
		want: []Conflict{
			{IP: addr("192.168.1.100"), Winner: ngg("a", 0).ID, Loser: ngg("b", 0).ID},
			{IP: addr("192.168.1.100"), Winner: ngg("a", 0).ID, Loser: ngg("c", 0).ID},
		},
		wantAssignment: on("192.168.1.100", "worker1"),
	}, {
		name:           "an older legacy gateway beats a newer NetworkGatewayGroup",
		gateways:       []Gateway{ngg("gateway1", 1, "192.168.1.100"), legacy},
		want:           []Conflict{{IP: addr("192.168.1.100"), Winner: legacy.ID, Loser: ngg("gateway1", 0).ID}},
		wantAssignment: on("192.168.1.100", "worker1"),
	}, {
		name:           "a newer gateway listing the shared IP twice is one conflict",
		gateways:       []Gateway{ngg("new", 1, "192.168.1.100", "192.168.1.100"), ngg("old", 0, "192.168.1.100")},
		want:           []Conflict{{IP: addr("192.168.1.100"), Winner: ngg("old", 0).ID, Loser: ngg("new", 0).ID}},
		wantAssignment: on("192.168.1.100", "worker1"),
	}, {
		name:           "a gateway given twice counts once, as its older entry",
		gateways:       []Gateway{ngg("gw", 1, "192.168.1.101"), ngg("gw", 0, "192.168.1.100")},
		wantAssignment: on("192.168.1.100", "worker1"),
	}, {
		name:           "no shared IP, no conflict",
		gateways:       []Gateway{ngg("a", 0, "192.168.1.100"), ngg("b", 0, "192.168.1.101")},
		wantAssignment: on("192.168.1.100", "worker1", "192.168.1.101", "worker2"),
	}}
	nodes := []Node{worker("worker1", lan), worker("worker2", lan)}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reversed := slices.Clone(tt.gateways)
			slices.Reverse(reversed)
			// The winner must not depend on which gateway the informer listed first.
			for _, gateways := range [][]Gateway{tt.gateways, reversed} {
				got := Place(Input{Gateways: gateways, Nodes: nodes})
				if !slices.Equal(got.Conflicts, tt.want) {
					t.Errorf("Conflicts:\n got %v\nwant %v", got.Conflicts, tt.want)
				}
				if !maps.Equal(got.Assignment, tt.wantAssignment) {
					t.Errorf("Assignment:\n got %v\nwant %v", got.Assignment, tt.wantAssignment)
				}
			}
		})
	}
}
