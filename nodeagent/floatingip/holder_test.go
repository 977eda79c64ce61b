package floatingip

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
)

// node is a fake node: eth0 in 198.51.100.0/24 with its own address and a foreign one
// (a DHCP lease, say), eth1 in 203.0.113.0/26, and a 15-character uplink in
// 203.0.113.128/26.
func node() ([]link, []fakeAddr) {
	links := []link{
		{Index: 1, Name: "lo", Kind: "device", MAC: mac(0), Up: true, Loopback: true},
		{Index: 2, Name: "eth0", Kind: "device", MAC: mac(2), Up: true},
		{Index: 3, Name: "eth1", Kind: "device", MAC: mac(3), Up: true},
		{Index: 4, Name: "uplink-abcdefgh", Kind: "device", MAC: mac(4), Up: true},
	}
	addrs := []fakeAddr{
		{address{LinkIndex: 1, Prefix: pfx("127.0.0.1/8"), Label: "lo"}, 0},
		{address{LinkIndex: 2, Prefix: pfx("198.51.100.11/24"), Label: "eth0"}, 0},
		{address{LinkIndex: 2, Prefix: pfx("198.51.100.50/24"), Label: "eth0"}, 100},
		{address{LinkIndex: 3, Prefix: pfx("203.0.113.11/26"), Label: "eth1"}, 0},
		{address{LinkIndex: 4, Prefix: pfx("203.0.113.130/26"), Label: "uplink-abcdefgh"}, 0},
	}
	return links, addrs
}

func floating(linkIndex int, ip, label string, lifetime uint32) fakeAddr {
	return fakeAddr{address{LinkIndex: linkIndex, Prefix: netip.PrefixFrom(netip.MustParseAddr(ip), 32), Label: label}, lifetime}
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestReconcile(t *testing.T) {
	tests := []struct {
		name      string
		held      []fakeAddr
		want      map[netip.Addr]time.Duration
		wantAdded []fakeAddr // on top of the node's own addresses
		wantErrs  []string
		announced []string // "ip on link"
	}{
		{
			name:      "adds a /32 with the lifetime rounded up, and announces it",
			want:      map[netip.Addr]time.Duration{ip("198.51.100.100"): 2500 * time.Millisecond},
			wantAdded: []fakeAddr{floating(2, "198.51.100.100", "eth0:egw", 3)},
			announced: []string{"198.51.100.100 on eth0"},
		},
		{
			name:      "refreshes what it holds, without announcing again",
			held:      []fakeAddr{floating(2, "198.51.100.100", "eth0:egw", 3)},
			want:      map[netip.Addr]time.Duration{ip("198.51.100.100"): 10 * time.Second},
			wantAdded: []fakeAddr{floating(2, "198.51.100.100", "eth0:egw", 10)},
		},
		{
			name: "removes what is not wanted and nothing else",
			held: []fakeAddr{
				floating(2, "198.51.100.100", "eth0:egw", 3),
				floating(2, "198.51.100.101", "eth0:egw", 3),
				floating(2, "198.51.100.102", "eth0", 0), // someone else's /32
			},
			want:      map[netip.Addr]time.Duration{ip("198.51.100.101"): time.Second},
			wantAdded: []fakeAddr{floating(2, "198.51.100.101", "eth0:egw", 1), floating(2, "198.51.100.102", "eth0", 0)},
		},
		{
			name: "an IP no subnet contains is an error, and the others are still reconciled",
			held: []fakeAddr{floating(2, "198.51.100.101", "eth0:egw", 3)},
			want: map[netip.Addr]time.Duration{
				ip("198.51.100.100"): 3 * time.Second,
				ip("203.0.113.200"):  3 * time.Second,
			},
			wantAdded: []fakeAddr{floating(2, "198.51.100.100", "eth0:egw", 3)},
			wantErrs:  []string{"203.0.113.200: no interface subnet contains it"},
			announced: []string{"198.51.100.100 on eth0"},
		},
		{
			name:     "an IP someone else has is not taken over",
			want:     map[netip.Addr]time.Duration{ip("198.51.100.50"): 3 * time.Second},
			wantErrs: []string{"198.51.100.50 is already on eth0 as 198.51.100.50/24, which egressgw did not add"},
		},
		{
			name:     "the node's own address is not taken over",
			want:     map[netip.Addr]time.Duration{ip("198.51.100.11"): 3 * time.Second},
			wantErrs: []string{"198.51.100.11 is already on eth0"},
		},
		{
			name: "a lapsed grant is released",
			held: []fakeAddr{floating(2, "198.51.100.100", "eth0:egw", 3)},
			want: map[netip.Addr]time.Duration{ip("198.51.100.100"): 0},
		},
		{
			name:      "a long device name gets a cut label",
			want:      map[netip.Addr]time.Duration{ip("203.0.113.140"): time.Second},
			wantAdded: []fakeAddr{floating(4, "203.0.113.140", "uplink-abcd:egw", 1)},
			announced: []string{"203.0.113.140 on uplink-abcdefgh"},
		},
		{
			name:      "an IP held where no subnet contains it any more moves to where one does",
			held:      []fakeAddr{floating(3, "203.0.113.140", "eth1:egw", 5)},
			want:      map[netip.Addr]time.Duration{ip("203.0.113.140"): time.Second},
			wantAdded: []fakeAddr{floating(4, "203.0.113.140", "uplink-abcd:egw", 1)},
			announced: []string{"203.0.113.140 on uplink-abcdefgh"},
		},
		{
			name:      "an IP held that no subnet contains is left to its lifetime",
			held:      []fakeAddr{floating(3, "203.0.113.200", "eth1:egw", 5)},
			want:      map[netip.Addr]time.Duration{ip("203.0.113.200"): time.Minute},
			wantAdded: []fakeAddr{floating(3, "203.0.113.200", "eth1:egw", 5)},
			wantErrs:  []string{"203.0.113.200: no interface subnet contains it"},
		},
		{
			name:     "IPv6 is an error",
			want:     map[netip.Addr]time.Duration{ip("2001:db8::1"): time.Second},
			wantErrs: []string{"2001:db8::1 is not IPv4"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			links, own := node()
			k := &fakeKernel{links: links, addrs: append(slices.Clone(own), tt.held...)}
			h := newHolder(Options{GARPSchedule: []time.Duration{0}}, k)
			err := h.Reconcile(tt.want)
			h.wg.Wait()

			checkErrs(t, err, tt.wantErrs)
			if diff := gocmp.Diff(sortAddrs(append(slices.Clone(own), tt.wantAdded...)), sortAddrs(k.addrs), prefixes, gocmp.AllowUnexported(fakeAddr{})); diff != "" {
				t.Errorf("addresses (-want +got):\n%s", diff)
			}
			var announced []string
			for _, f := range k.frames() {
				if f.p.Operation == 1 { // one request per announcement
					announced = append(announced, f.p.SenderIP.String()+" on "+f.link)
				}
			}
			if diff := gocmp.Diff(tt.announced, announced); diff != "" {
				t.Errorf("announced (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRestartAndRelease(t *testing.T) {
	tests := []struct {
		name     string
		then     func(*Holder) error
		wantHeld []netip.Addr
	}{
		{
			name: "a new holder keeps what is still wanted and removes the rest",
			then: func(h *Holder) error {
				return h.Reconcile(map[netip.Addr]time.Duration{ip("203.0.113.140"): time.Second})
			},
			wantHeld: []netip.Addr{ip("203.0.113.140")},
		},
		{
			name: "a new holder releases all",
			then: (*Holder).ReleaseAll,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			links, own := node()
			k := &fakeKernel{links: links, addrs: slices.Clone(own)}
			first := newHolder(Options{}, k)
			if err := first.Reconcile(map[netip.Addr]time.Duration{ip("198.51.100.100"): time.Second, ip("203.0.113.140"): time.Second}); err != nil {
				t.Fatalf("Reconcile: %v", err)
			}
			first.wg.Wait()

			second := newHolder(Options{}, k)
			held, err := second.Held()
			if err != nil {
				t.Fatalf("Held: %v", err)
			}
			if diff := gocmp.Diff([]netip.Addr{ip("198.51.100.100"), ip("203.0.113.140")}, held, addrCmp); diff != "" {
				t.Errorf("Held after restart (-want +got):\n%s", diff)
			}
			if err := tt.then(second); err != nil {
				t.Fatalf("%v", err)
			}
			second.wg.Wait()
			held, _ = second.Held()
			if diff := gocmp.Diff(tt.wantHeld, held, addrCmp); diff != "" {
				t.Errorf("Held (-want +got):\n%s", diff)
			}
			if got := second.Stats().GARPSent; got != 0 {
				t.Errorf("the new holder sent %d GARPs for addresses it found, want 0", got)
			}
			for _, a := range own {
				if !slices.Contains(k.addrs, a) {
					t.Errorf("the node's address %s is gone or changed", a.Prefix)
				}
			}
		})
	}
}

func checkErrs(t *testing.T, err error, want []string) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Errorf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("no error, want one containing %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
}

var (
	prefixes = gocmp.Comparer(func(a, b netip.Prefix) bool { return a == b })
	addrCmp  = gocmp.Comparer(func(a, b netip.Addr) bool { return a == b })
)

func sortAddrs(as []fakeAddr) []fakeAddr {
	as = slices.Clone(as)
	slices.SortFunc(as, func(a, b fakeAddr) int {
		return cmp.Or(cmp.Compare(a.LinkIndex, b.LinkIndex), comparePrefix(a.Prefix, b.Prefix))
	})
	return as
}
