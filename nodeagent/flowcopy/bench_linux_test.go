package flowcopy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	hb "github.com/egressgw/egressgw/apiserver/heartbeat"
	"github.com/egressgw/egressgw/test/testenv"
)

// The copy between two network namespaces, with real conntrack on both ends: a holder (this
// process, its sockets in namespace A) and a standby (a child process run in namespace B,
// so that its CPU time is its own). Entries are made in A's zone at a chosen rate, as a
// gateway's connections would be; the holder's conntrack events feed its sender; the child
// writes the copies into B's zone and notes when each arrived.

const (
	childEnv  = "EGW_FLOWCOPY_CHILD"
	benchZone = 2640
	benchPort = 7473
)

var (
	holderAddr  = netip.MustParseAddr("198.51.100.1")
	standbyAddr = netip.MustParseAddr("198.51.100.2")
	benchIP     = netip.MustParseAddr("198.51.100.100")
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runStandbyChild())
	}
	os.Exit(m.Run())
}

// runStandbyChild is the standby: it prints its key, serves copies until its stdin
// closes, then writes when each entry arrived to the file $EGW_FLOWCOPY_OUT, takes the
// IP over (writes its copies into its zone), and prints how long that took.
func runStandbyChild() int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, err); return 1 }
	if path := os.Getenv("EGW_FLOWCOPY_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return fail(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return fail(err)
		}
		defer pprof.StopCPUProfile()
	}
	peer, err := hb.ParsePublicKey(os.Getenv("EGW_FLOWCOPY_PEER"))
	if err != nil {
		return fail(err)
	}
	key, err := hb.NewKeyPair()
	if err != nil {
		return fail(err)
	}
	ct, err := Open(benchZone)
	if err != nil {
		return fail(err)
	}
	// As an agent's, its conntrack events are watched (it holds no IP: none is sent).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = ct.Watch(ctx, func(netip.Addr) bool { return false }, func(Event) {}, func() {}) }()
	var mu sync.Mutex
	arrived := map[Key]int64{}
	r := NewReceiver(ReceiverOptions{Node: "standby", Keys: func() []*hb.KeyPair { return []*hb.KeyPair{key} },
		PeerKeys: func(string) []hb.PublicKey { return []hb.PublicKey{peer} },
		Accept:   func(netip.Addr, string) bool { return true }, MaxCopies: 200_000,
		Arrived: func(k Key) {
			if k.Pod.Port()%8 != 0 {
				return // an eighth of them is sample enough, and costs the child less
			}
			mu.Lock()
			arrived[k] = time.Now().UnixNano()
			mu.Unlock()
		}}, NewMetrics(nil))
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: standbyAddr.AsSlice(), Port: benchPort})
	if err != nil {
		return fail(err)
	}
	go func() { _ = r.Serve(ctx, conn) }()
	fmt.Printf("key %s\n", key.Public)
	_, _ = io.Copy(io.Discard, os.Stdin)
	cancel()
	f, err := os.Create(os.Getenv("EGW_FLOWCOPY_OUT"))
	if err != nil {
		return fail(err)
	}
	w := bufio.NewWriter(f)
	mu.Lock()
	for k, at := range arrived {
		fmt.Fprintf(w, "%d %s %s %d\n", k.Proto, k.Pod, k.Dst, at)
	}
	mu.Unlock()
	if err := w.Flush(); err != nil {
		return fail(err)
	}
	start := time.Now()
	entries := r.Take(benchIP, start)
	if n, err := Install(ct, entries); err != nil {
		return fail(fmt.Errorf("installing: %d failed: %w", n, err))
	}
	fmt.Printf("installed %d %d\n", len(entries), time.Since(start).Nanoseconds())
	return 0
}

// copyRig is the two namespaces, the standby child and the holder's sender.
type copyRig struct {
	nsA, nsB string
	child    *exec.Cmd
	stdin    io.WriteCloser
	stdout   *bufio.Reader
	out      string
	sender   *Sender
	inject   *Conntrack // A's zone, to make entries in
	injected map[Key]time.Time
}

func newCopyRig(t testing.TB) *copyRig {
	testenv.RequireRoot(t, "network namespaces and conntrack")
	rig := &copyRig{nsA: testenv.NewNetns(t, "egwfc"), nsB: testenv.NewNetns(t, "egwfc"), injected: map[Key]time.Time{}}
	for _, args := range [][]string{
		{"-n", rig.nsA, "link", "add", "fca", "type", "veth", "peer", "name", "fcb", "netns", rig.nsB},
		{"-n", rig.nsA, "addr", "add", holderAddr.String() + "/24", "dev", "fca"},
		{"-n", rig.nsB, "addr", "add", standbyAddr.String() + "/24", "dev", "fcb"},
		{"-n", rig.nsA, "link", "set", "fca", "up"},
		{"-n", rig.nsB, "link", "set", "fcb", "up"},
		{"-n", rig.nsA, "link", "set", "lo", "up"},
		{"-n", rig.nsB, "link", "set", "lo", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	holderKey, err := hb.NewKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	var src *Conntrack
	err = testenv.InNetns(rig.nsA, func() (err error) {
		if src, err = Open(benchZone); err != nil {
			return err
		}
		rig.inject, err = Open(benchZone)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.Close(); _ = rig.inject.Close() })
	standbyKey := rig.startChild(t, holderKey)
	ctx, cancel := context.WithCancel(context.Background())
	rig.sender = NewSender("holder", func() *hb.KeyPair { return holderKey }, src, SenderOptions{
		Dial: func(to netip.AddrPort) (c *net.UDPConn, err error) {
			err = testenv.InNetns(rig.nsA, func() error {
				c, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(to))
				return err
			})
			return c, err
		},
	}, NewMetrics(nil))
	rig.sender.Route(map[netip.Addr]Peer{benchIP: {Node: "standby", Addr: netip.AddrPortFrom(standbyAddr, benchPort), Key: standbyKey}})
	go rig.sender.Run(ctx)
	watched := make(chan error, 1)
	go func() { watched <- src.Watch(ctx, rig.sender.Wants, rig.sender.Note, rig.sender.Lost) }()
	t.Cleanup(func() {
		cancel()
		if err := <-watched; err != nil {
			t.Error(err)
		}
	})
	return rig
}

// startChild runs the standby in namespace B and returns its key.
func (rig *copyRig) startChild(t testing.TB, holder *hb.KeyPair) hb.PublicKey {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	rig.out = filepath.Join(t.TempDir(), "arrivals")
	cmd := exec.Command("ip", "netns", "exec", rig.nsB, exe)
	cmd.Env = append(os.Environ(), childEnv+"=1", "EGW_FLOWCOPY_PEER="+holder.Public.String(), "EGW_FLOWCOPY_OUT="+rig.out)
	cmd.Stderr = os.Stderr
	if rig.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	rig.child = cmd
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	rig.stdout = bufio.NewReader(stdout)
	line, err := rig.stdout.ReadString('\n')
	if err != nil {
		t.Fatalf("the standby child: %v", err)
	}
	k, err := hb.ParsePublicKey(strings.TrimSpace(strings.TrimPrefix(line, "key ")))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// benchEntry is the i-th connection of the run.
func benchEntry(i int) Entry {
	return Entry{Key: Key{Proto: 6,
		Pod: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 16), byte(i >> 8)}), uint16(10000+i%256)),
		Dst: netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i % 200)}), 443)},
		EgressIP: benchIP, NATPort: uint16(1024 + i/200), Timeout: 3600,
		TCP: TCPInfo{State: TCPEstablished, WScaleOrig: 7, WScaleReply: 7, FlagsOrig: FlagWindowScale | FlagSACKPerm, FlagsReply: FlagWindowScale | FlagSACKPerm}}
}

// injectAt makes total entries in A's zone at rate per second, in batches every 10 ms.
func (rig *copyRig) injectAt(t testing.TB, rate, total int) {
	perTick := max(1, rate/100)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for made := 0; made < total; {
		<-tick.C
		var batch []Change
		for ; len(batch) < perTick && made < total; made++ {
			batch = append(batch, Change{Op: Create, Entry: benchEntry(made)})
		}
		now := time.Now()
		if n, err := rig.inject.Apply(batch); err != nil {
			t.Fatalf("making entries in the holder's zone: %d failed: %v", n, err)
		}
		for _, c := range batch {
			rig.injected[c.Entry.Key] = now
		}
	}
}

// waitCopies waits until the standby acknowledged n copies, all changes acknowledged.
func (rig *copyRig) waitCopies(t testing.TB, n int, within time.Duration) {
	deadline := time.Now().Add(within)
	for {
		st := rig.sender.Status()
		if len(st) == 1 && st[0].InSync && int(st[0].Copies) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the standby did not acknowledge %d copies within %s: %+v", n, within, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cpu is the child's CPU time so far.
func (rig *copyRig) cpu(t testing.TB) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", rig.childPID(t)))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond // USER_HZ is 100
}

// childPID is the standby's pid: ip netns exec execs it in place.
func (rig *copyRig) childPID(t testing.TB) int { return rig.child.Process.Pid }

// stop stops the child, which takes the IP over: it returns how long each injected entry
// took to arrive, how many copies the child installed, and how long that took.
func (rig *copyRig) stop(t testing.TB) (lags []time.Duration, installed int, took time.Duration) {
	_ = rig.stdin.Close()
	line, err := rig.stdout.ReadString('\n')
	if err != nil {
		t.Fatalf("the standby child's takeover: %v", err)
	}
	var ns int64
	if _, err := fmt.Sscanf(line, "installed %d %d", &installed, &ns); err != nil {
		t.Fatalf("the standby child said %q: %v", line, err)
	}
	if err := rig.child.Wait(); err != nil {
		t.Fatalf("the standby child: %v", err)
	}
	return rig.lags(t), installed, time.Duration(ns)
}

// lags reads how long each injected entry took to arrive.
func (rig *copyRig) lags(t testing.TB) []time.Duration {
	f, err := os.Open(rig.out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []time.Duration
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var k Key
		var pod, dst string
		var at int64
		if _, err := fmt.Sscan(sc.Text(), &k.Proto, &pod, &dst, &at); err != nil {
			t.Fatal(err)
		}
		k.Pod, k.Dst = netip.MustParseAddrPort(pod), netip.MustParseAddrPort(dst)
		if made, ok := rig.injected[k]; ok {
			out = append(out, time.Unix(0, at).Sub(made))
		}
	}
	slices.Sort(out)
	return out
}

// sampled is how many of the first n entries the child times.
func sampled(n int) int {
	out := 0
	for i := range n {
		if benchEntry(i).Pod.Port()%8 == 0 {
			out++
		}
	}
	return out
}

func quantile(d []time.Duration, q float64) time.Duration {
	return d[min(len(d)-1, int(q*float64(len(d))))]
}

// TestCopyBetweenNamespaces: entries made in the holder's zone reach the standby, through
// conntrack's events and the sealed stream, and land in its zone, as SNAT entries, when
// it takes the IP over.
func TestCopyBetweenNamespaces(t *testing.T) {
	rig := newCopyRig(t)
	rig.injectAt(t, 1000, 500)
	rig.waitCopies(t, 500, 10*time.Second)
	lags, installed, took := rig.stop(t)
	if len(lags) != sampled(500) || installed != 500 {
		t.Fatalf("%d arrivals noted and %d copies installed, want %d and 500", len(lags), installed, sampled(500))
	}
	t.Logf("lag p50 %s, p99 %s; installed in %s", quantile(lags, 0.5), quantile(lags, 0.99), took)
	var copied []Entry
	err := testenv.InNetns(rig.nsB, func() error {
		ct, err := Open(benchZone)
		if err != nil {
			return err
		}
		defer ct.Close()
		copied, err = ct.Dump()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(copied) != 500 {
		t.Fatalf("the standby's zone has %d SNAT entries, want 500", len(copied))
	}
	for _, e := range copied {
		want := benchEntry((int(e.NATPort)-1024)*200 + int(e.Dst.Addr().As4()[3]))
		if e.Key != want.Key || e.EgressIP != benchIP || e.TCP.State != TCPEstablished || e.TCP.WScaleOrig != 7 {
			t.Fatalf("copy %+v, want %+v", e, want)
		}
	}
}

// BenchmarkCopy makes 100,000 connections' entries in the holder's zone at 10,000 per
// second, and reports how long each took to reach the standby (p50, p99, max), the
// standby's CPU while they came (percent of one core, against the same time idle
// before), its peak memory with 100,000 copies, and how long it took to write them into
// its zone when it took the IP over.
func BenchmarkCopy(b *testing.B) {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	for b.Loop() {
		rig := newCopyRig(b)
		time.Sleep(time.Second) // the stream's first snapshot (empty)
		idle0, idleAt := rig.cpu(b), time.Now()
		time.Sleep(3 * time.Second)
		idle := float64(rig.cpu(b)-idle0) / float64(time.Since(idleAt))
		busy0, busyAt := rig.cpu(b), time.Now()
		rig.injectAt(b, 10_000, 100_000)
		rig.waitCopies(b, 100_000, 30*time.Second)
		busy := float64(rig.cpu(b)-busy0) / float64(time.Since(busyAt))
		hwm, _ := testenv.ProcStatus(rig.childPID(b), "VmHWM")
		lags, installed, took := rig.stop(b)
		if len(lags) != sampled(100_000) || installed != 100_000 {
			b.Fatalf("%d of the %d entries sampled arrived, %d of 100000 installed", len(lags), sampled(100_000), installed)
		}
		b.ReportMetric(ms(took), "takeover-install-ms")
		b.ReportMetric(ms(quantile(lags, 0.5)), "lag-p50-ms")
		b.ReportMetric(ms(quantile(lags, 0.99)), "lag-p99-ms")
		b.ReportMetric(ms(lags[len(lags)-1]), "lag-max-ms")
		b.ReportMetric(100*busy, "standby-cpu-%")
		b.ReportMetric(100*idle, "standby-idle-cpu-%")
		b.ReportMetric(float64(hwm)/(1<<20), "standby-peak-MiB")
	}
}
