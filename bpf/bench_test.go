package bpf

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/egressgw/egressgw/apiserver/routing"
)

// BenchmarkClassify measures egw_from_pod per packet with 1,000 policies of 10
// destinations each (10,000 CIDRs) and 10 to 10,000 local pods. A packet costs a few hash
// lookups and one in its set's own trie, whatever the number of sets, so the cost should
// stay flat; the target is 100 ns per packet or less. "steer" goes to an egress IP on the
// node's subnet, "route" to one on another segment (the routed way: one lookup more).
func BenchmarkClassify(b *testing.B) {
	const policies, destsPerPolicy = 1000, 10
	var ps []pol
	for i := range policies {
		p := pol{name: fmt.Sprintf("p%04d", i), age: i % 7, egressIP: fmt.Sprintf("198.51.100.%d", 10+i%200)}
		for j := range destsPerPolicy {
			k := i*destsPerPolicy + j // /30s tiling 198.19.0.0/16
			p.dests = append(p.dests, fmt.Sprintf("198.19.%d.%d/30", k*4/256, k*4%256))
		}
		ps = append(ps, p)
	}
	compiled := compile(ps...)
	packets := []struct {
		name string
		pkt  []byte
		want string
	}{
		{name: "steer", pkt: ipv4Packet("198.18.0.1", "198.19.0.1", protoTCP), want: "from_pod_steer"},
		{name: "route", pkt: ipv4Packet("198.18.0.2", "198.19.0.41", protoTCP), want: "from_pod_route"},
		{name: "pass", pkt: ipv4Packet("198.18.0.1", "203.0.113.5", protoTCP), want: "from_pod_pass"},
	}
	for _, pods := range []int{10, 1000, 10000} {
		d := load(b)
		var local []routing.LocalPod
		for j := range pods {
			local = append(local, pod(fmt.Sprintf("198.18.%d.%d", j/250, j%250+1), ps[j%policies].name))
		}
		tbl := build(b, routing.NewTableBuilder(), compiled, local...)
		allowSources(b, d, netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2"))
		// Pod 198.18.0.1's egress IP (p0000's) is on the node's subnet, 198.18.0.2's
		// (p0001's) on another segment.
		if err := d.SetUplinks(map[netip.Addr]Uplink{netip.MustParseAddr("198.51.100.10"): {Ifindex: 1, MAC: []byte{2, 0, 0, 0, 0, 1}}}); err != nil {
			b.Fatal(err)
		}
		if err := d.SetRouted(map[netip.Addr]Routed{netip.MustParseAddr("198.51.100.11"): {Ifindex: 1, Src: netip.MustParseAddr("198.51.100.142")}}); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := d.Sync(tbl); err != nil {
			b.Fatal(err)
		}
		first := time.Since(start)
		start = time.Now()
		if err := d.Sync(tbl); err != nil {
			b.Fatal(err)
		}
		unchanged := time.Since(start)
		b.Logf("%d pods: %d sets, %d routes; the first Sync took %v, an unchanged one %v", pods, len(tbl.Sets),
			len(d.mustRead(b).routes), first.Round(time.Millisecond), unchanged.Round(time.Millisecond))
		for _, p := range packets {
			b.Run(fmt.Sprintf("pods=%d/%s", pods, p.name), func(b *testing.B) {
				before := stats(b, d)[p.want]
				ret, perPacket, err := d.objs.EgwFromPod.Benchmark(p.pkt, b.N, b.ResetTimer)
				if err != nil {
					b.Fatal(err)
				}
				if ret != retNext || stats(b, d)[p.want] < before+uint64(b.N) {
					b.Fatalf("the packet did not take the %s path (returned %#x)", p.want, ret)
				}
				b.ReportMetric(float64(perPacket.Nanoseconds()), "ns/packet")
			})
		}
		d.Close()
	}
}

func (d *Dataplane) mustRead(b *testing.B) state {
	s, err := d.read()
	if err != nil {
		b.Fatal(err)
	}
	return s
}
