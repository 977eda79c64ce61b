package placement

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// bigCluster is 500 nodes (12 of them control-plane) spread over four /21 subnets, and
// 1,000 gateways of 3 IPs each, with the IPs of one gateway in one subnet.
func bigCluster() Input {
	var in Input
	for i := range 500 {
		base := netip.AddrFrom4([4]byte{10, 0, byte(8 * (i % 4)), 0})
		host := base.As4()
		host[2] += byte((i / 4) / 256)
		host[3] = byte((i/4)%256 + 1)
		in.Nodes = append(in.Nodes, Node{
			Name:         fmt.Sprintf("node-%03d", i),
			Subnets:      []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4(host), 21)},
			ControlPlane: i < 12,
			Up:           true,
		})
	}
	for g := range 1000 {
		gw := ngg(fmt.Sprintf("gateway-%04d", g), 0)
		gw.Created = t0.Add(time.Duration(g) * time.Second)
		for k := range 3 {
			n := 256 + 3*(g/4) + k // past the node addresses, within the /21
			gw.FloatingIPs = append(gw.FloatingIPs, netip.AddrFrom4([4]byte{10, 0, byte(8*(g%4) + n/256), byte(n % 256)}))
		}
		in.Gateways = append(in.Gateways, gw)
	}
	return in
}

func BenchmarkPlace(b *testing.B) {
	scratch := bigCluster()
	resync := bigCluster()
	resync.Current = Place(scratch).Assignment
	if len(resync.Current) != 3000 {
		b.Fatalf("the cluster should place all 3000 IPs, placed %d", len(resync.Current))
	}
	nodeDown := bigCluster()
	nodeDown.Current = resync.Current
	nodeDown.Nodes[100].Up = false
	if moves := len(Place(nodeDown).Moves); moves == 0 {
		b.Fatalf("%s held no IP, so its failure measures nothing", nodeDown.Nodes[100].Name)
	}

	benchmarks := []struct {
		name string
		in   Input
	}{
		{"from scratch", scratch},
		{"resync", resync},
		{"one node down", nodeDown},
	}
	for _, bm := range benchmarks {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Place(bm.in)
			}
		})
	}
	b.Run("views", func(b *testing.B) {
		r := Place(resync)
		b.ReportAllocs()
		for b.Loop() {
			Views(resync, r)
		}
	})
}
