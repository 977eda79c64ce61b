package flowcopy

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	hb "github.com/egressgw/egressgw/apiserver/heartbeat"
)

// fakeTable is a conntrack zone in memory.
type fakeTable struct {
	mu      sync.Mutex
	entries map[Key]Entry
	writes  int
}

func newFakeTable(es ...Entry) *fakeTable {
	t := &fakeTable{entries: map[Key]Entry{}}
	for _, e := range es {
		t.entries[e.Key] = e
	}
	return t
}

func (t *fakeTable) Apply(changes []Change) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range changes {
		t.writes++
		switch c.Op {
		case Create, Update:
			t.entries[c.Entry.Key] = c.Entry
		case Delete:
			delete(t.entries, c.Entry.Key)
		}
	}
	return 0, nil
}

func (t *fakeTable) Dump() ([]Entry, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slicesOf(t.entries), nil
}

func slicesOf(m map[Key]Entry) []Entry {
	out := make([]Entry, 0, len(m))
	for _, e := range m {
		out = append(out, e)
	}
	return out
}

var (
	ipA = netip.MustParseAddr("198.51.100.50")
	ipC = netip.MustParseAddr("198.51.100.51")
)

func entry(ip netip.Addr, i int) Entry {
	return Entry{Key: Key{Proto: 6, Pod: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 40000),
		Dst: netip.MustParseAddrPort("203.0.113.1:443")}, EgressIP: ip, NATPort: uint16(1024 + i), Timeout: 3600,
		TCP: TCPInfo{State: TCPEstablished, WScaleOrig: 7, WScaleReply: 7, FlagsOrig: FlagWindowScale, FlagsReply: FlagWindowScale}}
}

// relay forwards datagrams between the sender and the receiver, dropping those drop picks.
type relay struct {
	conn  *net.UDPConn
	drop  atomic.Pointer[func(n int) bool]
	count atomic.Int64
}

func newRelay(t *testing.T, to netip.AddrPort) *relay {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{conn: conn}
	none := func(int) bool { return false }
	r.drop.Store(&none)
	back, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(to))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(); _ = back.Close() })
	var from atomic.Pointer[netip.AddrPort]
	go func() {
		buf := make([]byte, 2048)
		for {
			n, src, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			from.Store(&src)
			if (*r.drop.Load())(int(r.count.Add(1))) {
				continue
			}
			_, _ = back.Write(buf[:n])
		}
	}()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, err := back.Read(buf)
			if err != nil {
				return
			}
			if src := from.Load(); src != nil {
				_, _ = conn.WriteToUDPAddrPort(buf[:n], *src)
			}
		}
	}()
	return r
}

func (r *relay) addr() netip.AddrPort { return r.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

type pair struct {
	holderKey, standbyKey *hb.KeyPair
	mu                    sync.Mutex
	holds                 map[netip.Addr]string // what the standby's cache says
}

func (p *pair) setHolder(ip netip.Addr, node string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holds[ip] = node
}

// kept is what r keeps now.
func kept(r *Receiver) map[Key]Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[Key]Entry{}
	for _, c := range r.copies {
		rec, err := readRecord(c.rec[:])
		if err != nil {
			panic(err)
		}
		out[rec.Key] = rec.Entry
	}
	return out
}

func (p *pair) receiver(t *testing.T) (*Receiver, netip.AddrPort) {
	key := p.standbyKey // this receiver's, whatever the pair's becomes
	r := NewReceiver(ReceiverOptions{Node: "standby", Keys: func() []*hb.KeyPair { return []*hb.KeyPair{key} },
		PeerKeys: func(node string) []hb.PublicKey {
			p.mu.Lock()
			defer p.mu.Unlock()
			if node == "holder" {
				return []hb.PublicKey{p.holderKey.Public}
			}
			return nil
		},
		Accept: func(ip netip.Addr, node string) bool {
			p.mu.Lock()
			defer p.mu.Unlock()
			return p.holds[ip] == node
		},
		MaxCopies: 1000}, NewMetrics(nil))
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = r.Serve(ctx, conn) }()
	return r, conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

func (p *pair) sender(t *testing.T, src Source, to netip.AddrPort) *Sender {
	s := NewSender("holder", func() *hb.KeyPair { p.mu.Lock(); defer p.mu.Unlock(); return p.holderKey }, src,
		SenderOptions{Retransmit: 20 * time.Millisecond, Probe: 20 * time.Millisecond}, NewMetrics(nil))
	s.Route(map[netip.Addr]Peer{ipA: {Node: "standby", Addr: to, Key: p.standbyKey.Public}})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go s.Run(ctx)
	return s
}

func newPair(t *testing.T) *pair {
	h, err := hb.NewKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	s, err := hb.NewKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	return &pair{holderKey: h, standbyKey: s, holds: map[netip.Addr]string{ipA: "holder", ipC: "holder"}}
}

// eventually waits up to 5 s for cond.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func sameEntries(got map[Key]Entry, want ...Entry) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d copies, want %d", len(got), len(want))
	}
	for _, w := range want {
		g, ok := got[w.Key]
		if !ok || g.EgressIP != w.EgressIP || g.NATPort != w.NATPort || g.TCP != w.TCP {
			return fmt.Errorf("copy of %s is %+v", w, g)
		}
	}
	return nil
}

func TestCopyFollowsTheHolder(t *testing.T) {
	tests := []struct {
		name string
		// drop picks the datagrams (numbered from 1) the network loses.
		drop func(n int) bool
	}{
		{name: "lossless", drop: func(int) bool { return false }},
		{name: "every third datagram lost", drop: func(n int) bool { return n%3 == 0 }},
		{name: "the first twenty lost", drop: func(n int) bool { return n <= 20 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPair(t)
			src := newFakeTable(entry(ipA, 1), entry(ipA, 2), entry(ipC, 3))
			r, addr := p.receiver(t)
			rl := newRelay(t, addr)
			rl.drop.Store(&tt.drop)
			s := p.sender(t, src, rl.addr())
			// The snapshot: ipA's entries, not ipC's (no standby here).
			eventually(t, "the snapshot", func() error { return sameEntries(kept(r), entry(ipA, 1), entry(ipA, 2)) })
			// Changes follow: a new entry, a state change, a deletion.
			closing := entry(ipA, 2)
			closing.TCP.State = 5
			// change makes a change in the holder's table, and its event.
			change := func(e Entry, deleted bool) {
				op := Create
				if deleted {
					op = Delete
				}
				src.Apply([]Change{{Op: op, Entry: e}})
				s.Note(Event{Entry: e, Deleted: deleted, At: time.Now()})
			}
			change(entry(ipA, 4), false)
			change(closing, false)
			change(entry(ipA, 1), true)
			change(entry(ipC, 5), false) // not routed: no standby
			eventually(t, "the changes", func() error { return sameEntries(kept(r), closing, entry(ipA, 4)) })
			eventually(t, "the status", func() error {
				st := s.Status()
				if len(st) != 1 || st[0].IP != ipA || st[0].Standby != "standby" || !st[0].InSync || st[0].Copies != 2 {
					return fmt.Errorf("status %+v", st)
				}
				return nil
			})
			for i := 10; i < 200; i++ {
				change(entry(ipA, i), false)
			}
			if !s.Handover([]netip.Addr{ipA}, 5*time.Second) {
				t.Fatalf("the handover was not acknowledged")
			}
			if got := len(kept(r)); got != 192 {
				t.Errorf("after the handover the standby has %d copies, want 192", got)
			}
			// An entry whose deletion event was lost goes with the next snapshot.
			src.Apply([]Change{{Op: Delete, Entry: entry(ipA, 4)}})
			s.Lost()
			eventually(t, "the sweep", func() error {
				if _, ok := kept(r)[entry(ipA, 4).Key]; ok {
					return fmt.Errorf("the copy of a deleted entry is still kept")
				}
				return nil
			})
			// Taking the IP over hands the copies out, once.
			if got := r.Take(ipA, time.Now()); len(got) != 191 || len(kept(r)) != 0 {
				t.Errorf("Take handed out %d copies and kept %d, want 191 and 0", len(got), len(kept(r)))
			}
		})
	}
}

func TestCopyRestartsWithTheStandby(t *testing.T) {
	p := newPair(t)
	src := newFakeTable(entry(ipA, 1))
	first, addr := p.receiver(t)
	s := p.sender(t, src, addr)
	eventually(t, "the first copy", func() error { return sameEntries(kept(first), entry(ipA, 1)) })
	// The standby's agent restarts: a new receiver, with a new key, which the holder's
	// next Route names.
	p.standbyKey, _ = hb.NewKeyPair()
	second, addr2 := p.receiver(t)
	s.Route(map[netip.Addr]Peer{ipA: {Node: "standby", Addr: addr2, Key: p.standbyKey.Public}})
	src.Apply([]Change{{Op: Create, Entry: entry(ipA, 2)}})
	eventually(t, "the copy to the restarted standby", func() error { return sameEntries(kept(second), entry(ipA, 1), entry(ipA, 2)) })
}

// TestCopyWaitsForTheHolder: a standby takes entries only from the node its cache shows
// holding their IP. Until then it acknowledges nothing, so that when its cache catches
// up with a move, the sender's retransmissions land; and a datagram sealed with a key
// the holder never published is not even answered.
func TestCopyWaitsForTheHolder(t *testing.T) {
	p := newPair(t)
	p.setHolder(ipA, "another-node") // the standby's cache: not the sender, yet
	src := newFakeTable(entry(ipA, 1))
	r, addr := p.receiver(t)
	s := p.sender(t, src, addr)
	time.Sleep(700 * time.Millisecond) // retransmissions come and go, past inSyncWithin
	if got := kept(r); len(got) != 0 {
		t.Errorf("the standby took %v from a node that does not hold the IP", got)
	}
	if st := s.Status(); len(st) != 1 || st[0].InSync {
		t.Errorf("status %+v, want one copy, not in sync", st)
	}
	p.setHolder(ipA, "holder")
	eventually(t, "the copy once the cache shows the holder", func() error { return sameEntries(kept(r), entry(ipA, 1)) })

	forger, _ := hb.NewKeyPair()
	sess, _ := hb.NewPairSession(forger, p.standbyKey.Public, "holder", "standby")
	b := sealData(nil, sess, 1, dataMsg{Stream: 9, Seq: 1, Records: []record{{op: opUpsert, Entry: entry(ipA, 7)}}})
	if _, ok := r.handle(b, time.Now()); ok {
		t.Errorf("a forged datagram was answered")
	}
	if got := kept(r); len(got) != 1 {
		t.Errorf("a forged datagram wrote: %v", got)
	}
}

// TestCopyFollowsTheHoldersKey: a holder that rotated its key (and retired the old one)
// seals with the new one from its next Route on, which a standby that no longer has a
// session of the old key takes.
func TestCopyFollowsTheHoldersKey(t *testing.T) {
	p := newPair(t)
	src := newFakeTable(entry(ipA, 1))
	r, addr := p.receiver(t)
	s := p.sender(t, src, addr)
	eventually(t, "the first copy", func() error { return sameEntries(kept(r), entry(ipA, 1)) })
	rotated, _ := hb.NewKeyPair()
	p.mu.Lock()
	p.holderKey = rotated // the old key retired: only the new one is published
	p.mu.Unlock()
	r.mu.Lock()
	clear(r.sessions) // the standby's sessions of the old key are gone
	clear(r.counters)
	r.mu.Unlock()
	s.Route(map[netip.Addr]Peer{ipA: {Node: "standby", Addr: addr, Key: p.standbyKey.Public}})
	src.Apply([]Change{{Op: Create, Entry: entry(ipA, 2)}})
	s.Note(Event{Entry: entry(ipA, 2), At: time.Now()})
	eventually(t, "the copy under the new key", func() error { return sameEntries(kept(r), entry(ipA, 1), entry(ipA, 2)) })
}
