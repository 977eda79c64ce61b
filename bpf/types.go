package bpf

import (
	"fmt"
	"net/netip"

	"github.com/egressgw/egressgw/apiserver/routing"
)

// The Go side of egw.h. layout_test.go checks these against the object's BTF.

// Marks, as egw.h and docs/dataplane.md lay them out.
const (
	markClassMask  = 0xF0000000
	markClassified = 0xC0000000
	markSteer      = 0xE0000000
	markSNAT       = 0xD0000000
	markRoute      = 0xF0000000
	markIDShift    = 16
	markIDMax      = 0xFFF
)

// verdict mirrors enum egw_verdict.
type verdict uint32

const (
	verdictInCluster verdict = 1
	verdictSteer     verdict = 2
	verdictDrop      verdict = 3
)

// ipv4 is an IPv4 address as the maps hold it: network byte order (__be32).
type ipv4 [4]byte

func toIPv4(a netip.Addr) (ipv4, error) {
	if !a.Is4() {
		return ipv4{}, fmt.Errorf("%s is not an IPv4 address: the dataplane steers IPv4 only", a)
	}
	return a.As4(), nil
}

func (ip ipv4) addr() netip.Addr { return netip.AddrFrom4(ip) }

// dstKey mirrors struct egw_dst_key, the key of a set's routes trie.
type dstKey struct {
	Prefixlen uint32 // 0 to 32
	Dst       ipv4
}

func (k dstKey) prefix() netip.Prefix { return netip.PrefixFrom(k.Dst.addr(), int(k.Prefixlen)) }

// snatDstKey mirrors struct egw_snat_dst_key, the key of egw_snat_dsts: Prefixlen is 32
// plus the destination prefix's length.
type snatDstKey struct {
	Prefixlen uint32
	EgressIP  ipv4
	Dst       ipv4
}

// routeKey is one route of one set: the set's slot in egw_set_routes and the key in
// its trie.
type routeKey struct {
	set uint32
	dstKey
}

func newRouteKey(set uint32, p netip.Prefix) routeKey {
	return routeKey{set: set, dstKey: dstKey{Prefixlen: uint32(p.Bits()), Dst: p.Masked().Addr().As4()}}
}

// routeValue mirrors struct egw_route.
type routeValue struct {
	Verdict  verdict
	EgressID uint32
	PolicyID uint32 // reserved for per-policy counters: routing.Table has no policy ids yet
}

func newRouteValue(r routing.TableRoute) (routeValue, error) {
	switch r.Verdict {
	case routing.InCluster:
		return routeValue{Verdict: verdictInCluster}, nil
	case routing.Drop:
		return routeValue{Verdict: verdictDrop}, nil
	case routing.SNAT:
		if r.EgressID == 0 || r.EgressID > markIDMax {
			return routeValue{}, fmt.Errorf("route %s: egress id %d does not fit the packet mark (1..%d)", r.Prefix, r.EgressID, markIDMax)
		}
		return routeValue{Verdict: verdictSteer, EgressID: r.EgressID}, nil
	}
	return routeValue{}, fmt.Errorf("route %s: verdict %s has no place in the dataplane's routes (no entry means pass)", r.Prefix, r.Verdict)
}

// grantValue mirrors struct egw_grant.
type grantValue struct {
	SNATID    uint32
	Pad       uint32
	ExpiresNs uint64
}

// uplinkValue mirrors struct egw_uplink.
type uplinkValue struct {
	Ifindex uint32
	MAC     [6]byte
	Pad     uint16
}

// routedValue mirrors struct egw_routed.
type routedValue struct {
	Ifindex uint32
	Saddr   ipv4
}

// statValue mirrors struct egw_stat, one per CPU.
type statValue struct {
	Packets uint64
	Bytes   uint64
}

// statNames names enum egw_stat_id, in its order. Stats reports these names.
var statNames = []string{
	"from_pod_not_ipv4",
	"from_pod_malformed",
	"from_pod_unknown_pod_pass",
	"from_pod_pass",
	"from_pod_in_cluster",
	"from_pod_steer",
	"from_pod_local_snat",
	"from_pod_drop_policy",
	"from_pod_drop_unknown_pod",
	"from_pod_drop_spoofed",
	"from_pod_route",
	"uplink_out_steer",
	"uplink_out_no_egress_ip",
	"uplink_out_no_uplink",
	"uplink_out_not_snated",
	"uplink_out_encap",
	"uplink_out_no_route",
	"uplink_out_bypassed",
	"arp_virtual_mac",
	"arp_lapsed_grant",
	"uplink_in_snat",
	"uplink_in_not_held",
	"uplink_in_expired",
	"uplink_in_malformed",
	"uplink_in_not_pod",
	"uplink_in_not_destination",
	"uplink_in_decap",
	"uplink_in_not_node",
}
