package flowcopy

import (
	"context"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/egressgw/egressgw/test/testenv"
)

// inNewNetns opens the zone's conntrack in a network namespace of its own, which goes
// when the test ends (nothing else refers to it).
func inNewNetns(t *testing.T, zone uint16) *Conntrack {
	t.Helper()
	testenv.RequireRoot(t, "a network namespace and conntrack")
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	c, openErr := Open(zone)
	if err := netns.Set(orig); err != nil {
		t.Fatal(err)
	}
	if openErr != nil {
		t.Fatal(openErr)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestConntrackWritesSNATEntries(t *testing.T) {
	c := inNewNetns(t, 2640)
	var mu sync.Mutex
	var events []Event
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- c.Watch(ctx, func(netip.Addr) bool { return true }, func(ev Event) { mu.Lock(); events = append(events, ev); mu.Unlock() }, func() { t.Error("events lost") })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	time.Sleep(50 * time.Millisecond) // the groups joined

	tcp := Entry{Key: Key{Proto: 6, Pod: netip.MustParseAddrPort("198.18.0.10:40000"), Dst: netip.MustParseAddrPort("203.0.113.1:80")},
		EgressIP: netip.MustParseAddr("198.51.100.50"), NATPort: 40001, Timeout: 3600,
		TCP: TCPInfo{State: TCPEstablished, WScaleOrig: 7, WScaleReply: 9, FlagsOrig: FlagWindowScale | FlagSACKPerm, FlagsReply: FlagWindowScale | 0x20}}
	udp := Entry{Key: Key{Proto: 17, Pod: netip.MustParseAddrPort("198.18.0.11:5353"), Dst: netip.MustParseAddrPort("203.0.113.1:53")},
		EgressIP: netip.MustParseAddr("198.51.100.50"), NATPort: 5353, Timeout: 120}
	if n, err := c.Apply([]Change{{Op: Create, Entry: tcp}, {Op: Create, Entry: udp}}); err != nil {
		t.Fatalf("creating: %d failed: %v", n, err)
	}
	got := dumpByKey(t, c)
	if len(got) != 2 {
		t.Fatalf("dump has %d entries, want 2: %v", len(got), got)
	}
	g := got[tcp.Key]
	wantTCP := tcp.TCP
	wantTCP.FlagsReply = FlagWindowScale // only the flags that describe the connection are copied
	if g.EgressIP != tcp.EgressIP || g.NATPort != tcp.NATPort || g.TCP != wantTCP || g.Timeout < 3590 {
		t.Errorf("TCP entry = %+v, want %+v with flags %+v", g, tcp, wantTCP)
	}
	if g := got[udp.Key]; g.NATPort != 5353 || g.EgressIP != udp.EgressIP {
		t.Errorf("UDP entry = %+v", g)
	}

	// An update changes TCP's state; a create of an entry there replaces it, with its new
	// translation.
	closing := tcp
	closing.TCP.State = 5 // CLOSE_WAIT
	moved := udp
	moved.NATPort = 6000
	if n, err := c.Apply([]Change{{Op: Update, Entry: closing}, {Op: Create, Entry: moved}}); err != nil {
		t.Fatalf("updating: %d failed: %v", n, err)
	}
	got = dumpByKey(t, c)
	if got[tcp.Key].TCP.State != 5 || got[udp.Key].NATPort != 6000 {
		t.Errorf("after the update: %+v", got)
	}
	if n, err := c.Apply([]Change{{Op: Delete, Entry: tcp}, {Op: Delete, Entry: udp}, {Op: Delete, Entry: udp}}); err != nil {
		t.Fatalf("deleting: %d failed: %v", n, err)
	}
	if got := dumpByKey(t, c); len(got) != 0 {
		t.Errorf("left after deleting: %v", got)
	}
	// Drain returns once the events before it were read: the deletions are noted.
	if !c.Drain(2 * time.Second) {
		t.Fatalf("the sentinel's event never came back")
	}
	mu.Lock()
	noted := len(events)
	mu.Unlock()
	if noted < 6 {
		t.Errorf("after Drain, %d events noted, want at least 6 (3 changes, 3 deletions)", noted)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		mu.Lock()
		var created, deleted int
		for _, ev := range events {
			if ev.Deleted {
				deleted++
			} else {
				created++
			}
		}
		mu.Unlock()
		if deleted >= 3 && created >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events: %d changes and %d deletions, want at least 3 of each", created, deleted)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func dumpByKey(t *testing.T, c *Conntrack) map[Key]Entry {
	t.Helper()
	entries, err := c.Dump()
	if err != nil {
		t.Fatal(err)
	}
	out := map[Key]Entry{}
	for _, e := range entries {
		out[e.Key] = e
	}
	return out
}
