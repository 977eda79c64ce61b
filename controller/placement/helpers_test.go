package placement

import (
	"maps"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// lan is the node subnet of the spec's examples.
const lan = "192.168.1.0/24"

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func worker(name string, subnets ...string) Node {
	n := Node{Name: name, Up: true}
	for _, s := range subnets {
		n.Subnets = append(n.Subnets, netip.MustParsePrefix(s))
	}
	return n
}

func controlPlane(name string, subnets ...string) Node {
	n := worker(name, subnets...)
	n.ControlPlane = true
	return n
}

// withAddresses gives n the addresses its Node object reports.
func withAddresses(n Node, ips ...string) Node {
	for _, s := range ips {
		n.Addresses = append(n.Addresses, addr(s))
	}
	return n
}

func withRouters(n Node, ips ...string) Node {
	for _, s := range ips {
		n.Routers = append(n.Routers, addr(s))
	}
	return n
}

func down(n Node) Node     { n.Up = false; return n }
func cordoned(n Node) Node { n.Cordoned = true; return n }

// ngg is a NetworkGatewayGroup in kube-system created age minutes after t0.
func ngg(name string, age int, ips ...string) Gateway {
	g := Gateway{
		ID:      GatewayID{Kind: KindNetworkGatewayGroup, Namespace: "kube-system", Name: name},
		Created: t0.Add(time.Duration(age) * time.Minute),
	}
	for _, s := range ips {
		g.FloatingIPs = append(g.FloatingIPs, addr(s))
	}
	return g
}

// on builds an IP -> node (or IP -> reason) map from pairs.
func on(pairs ...string) map[netip.Addr]string {
	m := make(map[netip.Addr]string, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		m[addr(pairs[i])] = pairs[i+1]
	}
	return m
}

// checkResult fails t for every field of got that differs from want. Nil and empty are the
// same, since a caller cannot tell them apart with len or range.
func checkResult(t *testing.T, got, want Result) {
	t.Helper()
	if !maps.Equal(got.Assignment, want.Assignment) {
		t.Errorf("Assignment:\n got %v\nwant %v", got.Assignment, want.Assignment)
	}
	if !maps.Equal(got.Unassigned, want.Unassigned) {
		t.Errorf("Unassigned:\n got %q\nwant %q", got.Unassigned, want.Unassigned)
	}
	if !slices.Equal(got.Moves, want.Moves) {
		t.Errorf("Moves:\n got %v\nwant %v", got.Moves, want.Moves)
	}
	if !slices.Equal(got.Conflicts, want.Conflicts) {
		t.Errorf("Conflicts:\n got %v\nwant %v", got.Conflicts, want.Conflicts)
	}
}
