package bpf

import (
	"encoding/binary"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/apiserver/routing"
)

// requireBPF skips a test that needs root and BPF, except under CI, where it fails:
// CI runs as root, and a skipped dataplane test there would hide a broken dataplane.
func requireBPF(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test needs root (CAP_BPF, CAP_NET_ADMIN), and CI must run it")
	}
	t.Skip("needs root (CAP_BPF, CAP_NET_ADMIN); run as root, as CI does")
}

const bpffsRoot = "/sys/fs/bpf"

// newPinDir returns a fresh directory on bpffs, mounting bpffs first if need be, and
// uninstalls whatever is pinned there when the test ends.
func newPinDir(t testing.TB) string {
	t.Helper()
	requireBPF(t)
	var fs unix.Statfs_t
	if err := unix.Statfs(bpffsRoot, &fs); err != nil || fs.Type != unix.BPF_FS_MAGIC {
		if err := unix.Mount("bpf", bpffsRoot, "bpf", 0, ""); err != nil {
			t.Fatalf("mounting bpffs on %s: %v", bpffsRoot, err)
		}
	}
	dir, err := os.MkdirTemp(bpffsRoot, "egw-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := Uninstall(dir); err != nil {
			t.Errorf("uninstall: %v", err)
		}
	})
	return dir
}

// load loads the dataplane into a fresh pin directory and closes it when the test ends.
func load(t testing.TB) *Dataplane {
	t.Helper()
	d, err := Load(newPinDir(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// Return codes of the programs, as prog.Run reports them.
const (
	retNext = uint32(0xFFFFFFFF) // TCX_NEXT (-1)
	retDrop = uint32(2)          // TCX_DROP, TC_ACT_SHOT
)

// run runs prog on one packet with skb->mark set to mark, and returns its return code
// and the mark it left.
func run(t testing.TB, prog *ebpf.Program, pkt []byte, mark uint32) (uint32, uint32) {
	t.Helper()
	// ctx_out must be as big as the kernel's struct __sk_buff, or the run fails.
	ctx := make([]byte, skbSize(t))
	binary.NativeEndian.PutUint32(ctx[skbMarkOffset:], mark)
	out := make([]byte, len(ctx))
	ret, err := prog.Run(&ebpf.RunOptions{Data: pkt, Context: ctx, ContextOut: out})
	if err != nil {
		t.Fatalf("running %s: %v", prog, err)
	}
	return ret, binary.NativeEndian.Uint32(out[skbMarkOffset:])
}

// skbMarkOffset is offsetof(struct __sk_buff, mark), a stable UAPI.
const skbMarkOffset = 8

func skbSize(t testing.TB) int {
	t.Helper()
	n, err := kernelSkbSize()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

var kernelSkbSize = sync.OnceValues(func() (int, error) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return 0, fmt.Errorf("reading the kernel's BTF: %w", err)
	}
	var skb *btf.Struct
	if err := spec.TypeByName("__sk_buff", &skb); err != nil {
		return 0, fmt.Errorf("finding struct __sk_buff in the kernel's BTF: %w", err)
	}
	return int(skb.Size), nil
})

// Packets, as they arrive from a pod's veth: Ethernet, then the rest.

func ether(ethertype uint16, payload []byte) []byte {
	b := make([]byte, 14, 14+len(payload))
	copy(b[0:6], []byte{0x02, 0, 0, 0, 0, 0x01})
	copy(b[6:12], []byte{0x02, 0, 0, 0, 0, 0x02})
	binary.BigEndian.PutUint16(b[12:], ethertype)
	return append(b, payload...)
}

const (
	protoICMP = 1
	protoTCP  = 6
	protoUDP  = 17
)

// ipv4Packet is an IPv4 packet from src to dst with an empty TCP, UDP or ICMP header.
func ipv4Packet(src, dst string, proto uint8) []byte {
	l4 := map[uint8]int{protoTCP: 20, protoUDP: 8, protoICMP: 8}[proto]
	ip := make([]byte, 20+l4)
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	ip[8] = 64
	ip[9] = proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(ip[12:16], s[:])
	copy(ip[16:20], d[:])
	setIPv4Checksum(ip)
	switch proto {
	case protoTCP:
		binary.BigEndian.PutUint16(ip[20:], 40000)
		binary.BigEndian.PutUint16(ip[22:], 443)
		ip[32] = 5 << 4
		ip[33] = 0x02 // SYN
	case protoUDP:
		binary.BigEndian.PutUint16(ip[20:], 40000)
		binary.BigEndian.PutUint16(ip[22:], 53)
		binary.BigEndian.PutUint16(ip[24:], 8)
	case protoICMP:
		ip[20] = 8 // echo request
	}
	return ether(0x0800, ip)
}

// setIPv4Checksum writes the checksum of the 20-byte IPv4 header at the start of ip.
func setIPv4Checksum(ip []byte) {
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xFFFF {
		sum = sum&0xFFFF + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
}

func ipv6Packet() []byte {
	ip := make([]byte, 40+8)
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], 8)
	ip[6] = protoUDP
	ip[7] = 64
	copy(ip[8:24], netip.MustParseAddr("2001:db8::1").AsSlice())
	copy(ip[24:40], netip.MustParseAddr("2001:db8::2").AsSlice())
	return ether(0x86DD, ip)
}

// arpPacket is an Ethernet ARP request (op 1) or reply (op 2) whose sender is ip.
func arpPacket(op uint16, ip netip.Addr) []byte {
	arp := make([]byte, 28)
	binary.BigEndian.PutUint16(arp[0:], 1)      // Ethernet
	binary.BigEndian.PutUint16(arp[2:], 0x0800) // IPv4
	arp[4], arp[5] = 6, 4
	binary.BigEndian.PutUint16(arp[6:], op)
	copy(arp[8:14], []byte{0x02, 0, 0, 0, 0, 0x02})
	copy(arp[14:18], ip.AsSlice())
	copy(arp[24:28], netip.MustParseAddr("198.18.1.1").AsSlice())
	return ether(0x0806, arp)
}

// Tables, built the way the agent builds them.

// cluster is the test cluster: pods in 198.18.0.0/16, nodes in 198.51.100.0/24.
var cluster = []netip.Prefix{netip.MustParsePrefix("198.18.0.0/16"), netip.MustParsePrefix("198.51.100.0/24")}

// pol is an EgressNATPolicy that selects the pods labeled "p-<name>". A policy with no
// egress IP is not ready: no node holds its IP.
type pol struct {
	name     string
	age      int // minutes: on equal prefixes the older policy wins
	dests    []string
	egressIP string
}

func compile(ps ...pol) *routing.Policies {
	created := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	objs := make([]*v1.EgressNATPolicy, 0, len(ps))
	res := map[string]routing.Resolution{}
	for _, p := range ps {
		obj := &v1.EgressNATPolicy{ObjectMeta: metav1.ObjectMeta{Name: p.name, CreationTimestamp: metav1.NewTime(created.Add(-time.Duration(p.age) * time.Minute))}}
		obj.Spec.Sources = []v1.EgressSource{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"p-" + p.name: "yes"}}}}
		obj.Spec.EgressSourceIP = p.egressIP
		for _, d := range p.dests {
			obj.Spec.Destinations = append(obj.Spec.Destinations, v1.Destination{CIDR: d})
		}
		objs = append(objs, obj)
		r := routing.Resolution{EgressIP: p.egressIP, Reason: routing.ReasonUnknownEgressIP, Message: "no node holds it"}
		if p.egressIP != "" {
			r = routing.Resolution{EgressIP: p.egressIP, Node: "gw1", Reason: routing.ReasonReady}
		}
		res[p.name] = r
	}
	return routing.Compile(objs, func(p *v1.EgressNATPolicy) routing.Resolution { return res[p.Name] })
}

// pod is a local pod selected by the named policies.
func pod(ip string, policies ...string) routing.LocalPod {
	p := routing.LocalPod{Pod: routing.Pod{Namespace: "ns", Name: "pod-" + ip, IP: netip.MustParseAddr(ip), Node: "worker1", Labels: map[string]string{}}}
	for _, name := range policies {
		p.Labels["p-"+name] = "yes"
	}
	return p
}

func build(t testing.TB, b *routing.TableBuilder, ps *routing.Policies, pods ...routing.LocalPod) routing.Table {
	t.Helper()
	tbl, err := b.Build(ps, pods, cluster)
	if err != nil {
		t.Fatal(err)
	}
	return tbl
}

// egressIDOf finds the egress id the table gave ip.
func egressIDOf(t testing.TB, tbl routing.Table, ip string) uint32 {
	t.Helper()
	for id, a := range tbl.Egress {
		if a.String() == ip {
			return id
		}
	}
	t.Fatalf("the table has no egress id for %s", ip)
	return 0
}

// statsDelta runs f and returns how each counter moved.
func statsDelta(t testing.TB, d *Dataplane, f func()) map[string]uint64 {
	t.Helper()
	before := stats(t, d)
	f()
	return diff(before, stats(t, d))
}

// loIfindex is the interface prog.Run runs a program on when the context names none: the
// loopback device, whose skb->ifindex is 1.
const loIfindex = 1

// allowSources lets the sources send through egw_from_pod as prog.Run runs it, as
// AttachPod lets a pod's own addresses through its veth.
func allowSources(t testing.TB, d *Dataplane, ips ...netip.Addr) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	var have []netip.Addr
	var k podSourceKey
	var v uint8
	for it := d.objs.EgwPodSources.Iterate(); it.Next(&k, &v); {
		if k.Ifindex == loIfindex {
			have = append(have, k.Saddr.addr())
		}
	}
	if err := d.setPodSources(loIfindex, append(have, ips...)); err != nil {
		t.Fatal(err)
	}
}

// allowPods lets every pod of the table send from its own address.
func allowPods(t testing.TB, d *Dataplane, tbl routing.Table) {
	t.Helper()
	allowSources(t, d, slices.Collect(maps.Keys(tbl.Pods))...)
}
