package floatingip

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/mdlayher/arp"
)

func TestAnnouncements(t *testing.T) {
	m, addr := mac(2), ip("198.51.100.100")
	pkts, err := announcements(m, addr)
	if err != nil {
		t.Fatalf("announcements: %v", err)
	}
	tests := []struct {
		name    string
		op      arp.Operation
		wantTHA net.HardwareAddr
	}{
		{name: "request with a zero target MAC", op: arp.OperationRequest, wantTHA: net.HardwareAddr{0, 0, 0, 0, 0, 0}},
		{name: "reply with our MAC as the target MAC", op: arp.OperationReply, wantTHA: m},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i := slices.IndexFunc(pkts, func(p *arp.Packet) bool { return p.Operation == tt.op })
			if i < 0 {
				t.Fatalf("no %v among %d packets", tt.op, len(pkts))
			}
			p := pkts[i]
			if p.SenderIP != addr || p.TargetIP != addr {
				t.Errorf("sender IP %s, target IP %s; want both %s", p.SenderIP, p.TargetIP, addr)
			}
			if p.SenderHardwareAddr.String() != m.String() {
				t.Errorf("sender MAC %s, want %s", p.SenderHardwareAddr, m)
			}
			if p.TargetHardwareAddr.String() != tt.wantTHA.String() {
				t.Errorf("target MAC %s, want %s", p.TargetHardwareAddr, tt.wantTHA)
			}
		})
	}
}

func TestGARPBurst(t *testing.T) {
	want := map[netip.Addr]time.Duration{ip("198.51.100.100"): time.Minute}
	tests := []struct {
		name       string
		schedule   []time.Duration
		openErr    error
		releaseAt  time.Duration // release the IP this long after adding it; 0: never
		wantFrames int
		wantStats  Stats
		wantOpened int
	}{
		{
			name:       "a request and a reply at every delay",
			schedule:   []time.Duration{0, 20 * time.Millisecond, 60 * time.Millisecond},
			wantFrames: 6, wantStats: Stats{GARPSent: 6}, wantOpened: 1,
		},
		{
			name:       "stops announcing an IP released meanwhile",
			schedule:   []time.Duration{0, 10 * time.Millisecond, 3 * time.Second},
			releaseAt:  200 * time.Millisecond,
			wantFrames: 4, wantStats: Stats{GARPSent: 4}, wantOpened: 1,
		},
		{
			name:      "a socket that cannot be opened counts every frame as failed",
			schedule:  []time.Duration{0, 10 * time.Millisecond, 20 * time.Millisecond},
			openErr:   errors.New("operation not permitted"),
			wantStats: Stats{GARPFailed: 6}, wantOpened: 0,
		},
		{
			name:     "an empty schedule announces nothing",
			schedule: []time.Duration{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			links, own := node()
			k := &fakeKernel{links: links, addrs: own, openErr: tt.openErr}
			h := newHolder(Options{GARPSchedule: tt.schedule}, k)
			start := time.Now()
			if err := h.Reconcile(want); err != nil {
				t.Fatalf("Reconcile: %v", err)
			}
			if tt.releaseAt > 0 {
				time.Sleep(tt.releaseAt)
				if err := h.Reconcile(nil); err != nil {
					t.Fatalf("Reconcile(nil): %v", err)
				}
			}
			done := make(chan struct{})
			go func() { h.wg.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(2 * time.Second):
				t.Fatalf("announcements still going 2s after the last Reconcile")
			}

			frames := k.frames()
			if len(frames) != tt.wantFrames {
				t.Fatalf("sent %d frames, want %d", len(frames), tt.wantFrames)
			}
			if got := h.Stats(); got != tt.wantStats {
				t.Errorf("Stats() = %+v, want %+v", got, tt.wantStats)
			}
			if k.opened != tt.wantOpened {
				t.Errorf("opened %d ARP sockets, want %d", k.opened, tt.wantOpened)
			}
			for i, f := range frames {
				if f.dst.String() != "ff:ff:ff:ff:ff:ff" {
					t.Errorf("frame %d goes to %s, want broadcast", i, f.dst)
				}
				// Timers never fire early: frame pair n is at least its delay after the add.
				if d := tt.schedule[i/2]; f.at.Sub(start) < d {
					t.Errorf("frame %d sent %v after the add, before its delay %v", i, f.at.Sub(start), d)
				}
			}
		})
	}
}
