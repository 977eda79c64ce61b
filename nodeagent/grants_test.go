package nodeagent

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"
)

// TestNoGrantHoldsNothing: with no valid grant, a pass holds no IP and lets the dataplane
// SNAT to none, whatever the node's spec grants: never hold an IP past its grant.
func TestNoGrantHoldsNothing(t *testing.T) {
	all := []netip.Addr{ip1, ip2, ip3}
	tests := []struct {
		name string
		// setup leaves the node without a valid grant.
		setup func(*testing.T, *rig)
	}{
		{name: "never renewed", setup: func(*testing.T, *rig) {}},
		{name: "lapsed after holding", setup: func(t *testing.T, r *rig) {
			r.renew(t)
			r.pass(t, cluster(1, all, ip1, ip2))
			r.clock.t += r.a.grants.timing.LeaseDuration
		}},
		{name: "renewals failing until it lapsed", setup: func(t *testing.T, r *rig) {
			r.renew(t)
			r.pass(t, cluster(1, all, ip1, ip2))
			r.leases.err = errors.New("etcdserver: request timed out")
			for range 5 {
				r.clock.t += r.a.grants.timing.RenewInterval
				if err := r.a.grants.beat.renew(context.Background(), true); err == nil {
					t.Fatal("a renewal the API server failed succeeded")
				}
			}
		}},
		{name: "restarted with grants left in BPF", setup: func(t *testing.T, r *rig) {
			r.dp.grants[ip1] = fakeGrant{id: 1, expires: r.clock.t + time.Second}
			r.dp.grants[ip2] = fakeGrant{id: 2, expires: r.clock.t + time.Second}
			if err := r.a.grants.restore(); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			tt.setup(t, r)
			from := r.pass(t, cluster(2, all, ip1, ip2))
			if i := r.rec.index(op("SetGrant"), from); i >= 0 {
				t.Errorf("a pass without a grant granted in BPF: %v", r.rec.calls[i])
			}
			if i := r.rec.index(op("Reconcile"), from); i < 0 || len(r.rec.calls[i].ips) != 0 {
				t.Errorf("a pass without a grant did not drop every IP; the calls:\n%s", r.rec.dump(from))
			}
			if len(r.fips.held) != 0 || len(r.dp.grants) != 0 || len(r.status.last.Held) != 0 {
				t.Errorf("without a grant: holding %v, BPF grants %v, reported %v; want none", r.fips.held, r.dp.grants, r.status.last.Held)
			}
			if err := r.a.grants.refresh(); err != nil || r.rec.index(op("SetGrant"), from) >= 0 {
				t.Errorf("a refresh without a grant: %v, calls:\n%s", err, r.rec.dump(from))
			}
		})
	}
}

// TestHeldExpiryWithinGrant: the BPF grants and the addresses' lifetimes end when the
// node's grant does, never later, as renewals extend it and refreshes carry that into
// the kernel.
func TestHeldExpiryWithinGrant(t *testing.T) {
	r := newRig(t)
	all := []netip.Addr{ip1, ip2, ip3}
	steps := []struct {
		name string
		do   func()
	}{
		{"a pass", func() { r.pass(t, cluster(1, all, ip1, ip2)) }},
		{"a refresh after a renewal", func() {
			r.renew(t)
			r.clock.t += 20 * time.Millisecond
			if err := r.a.grants.refresh(); err != nil {
				t.Fatal(err)
			}
		}},
		{"a pass later", func() { r.clock.t += 300 * time.Millisecond; r.pass(t, cluster(2, all, ip2)) }},
		{"a refresh after a pass", func() {
			r.renew(t)
			if err := r.a.grants.refresh(); err != nil {
				t.Fatal(err)
			}
		}},
	}
	r.renew(t)
	r.clock.t += 100 * time.Millisecond
	for _, s := range steps {
		from := len(r.rec.calls)
		s.do()
		expiry := r.a.grants.expiry()
		if r.rec.index(op("SetGrant"), from) < 0 || r.rec.index(op("Reconcile"), from) < 0 {
			t.Fatalf("%s: no grant or address written; the calls:\n%s", s.name, r.rec.dump(from))
		}
		for _, c := range r.rec.calls[from:] {
			switch c.op {
			case "SetGrant":
				if c.expires != expiry {
					t.Errorf("%s: BPF grant of %v until %v, want the node's grant's end, %v", s.name, c.ips, c.expires, expiry)
				}
			case "Reconcile":
				for ip, d := range c.lifetimes {
					if c.at+d != expiry {
						t.Errorf("%s: %s held until %v, want the node's grant's end, %v", s.name, ip, c.at+d, expiry)
					}
				}
			}
		}
		r.rec.before(t, op("SetGrant"), op("Reconcile"), from)
	}
}

// TestRenewal: only a renewal the API server acknowledged extends the grant, from when it
// was sent; a renewal that may not revive keeps a live grant but does not bring back one
// that lapsed (the leader's vouched answer does).
func TestRenewal(t *testing.T) {
	const lease = time.Second
	tests := []struct {
		name string
		// expiry is the grant's end before the renewal at 10s, relative to 10s; 0: none.
		expiry    time.Duration
		mayRevive bool
		fail      bool
		want      time.Duration // the grant's end after, relative to 10s; 0: none
	}{
		{name: "the first renewal", mayRevive: true, want: lease},
		{name: "a live grant extended", expiry: 200 * time.Millisecond, want: lease},
		{name: "a lapsed grant revived by a Lease renewal", expiry: -time.Millisecond, mayRevive: true, want: lease},
		{name: "a lapsed grant not revived without the leader's word", expiry: -time.Millisecond, want: -time.Millisecond},
		{name: "a failed write extends nothing", expiry: 200 * time.Millisecond, mayRevive: true, fail: true, want: 200 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const at = 10 * time.Second
			clock := &fakeClock{t: at}
			leases := &fakeLeases{}
			h := &heartbeat{leases: leases, node: nodeName, duration: lease, now: clock.now}
			if tt.expiry != 0 {
				h.expiry = at + tt.expiry
			}
			if tt.fail {
				leases.err = errors.New("etcdserver: request timed out")
			}
			err := h.renew(context.Background(), tt.mayRevive)
			if (err != nil) != tt.fail {
				t.Fatalf("renew: %v", err)
			}
			want := time.Duration(0)
			if tt.want != 0 {
				want = at + tt.want
			}
			if got := h.grantExpiry(); got != want {
				t.Errorf("grant ends at %v, want %v", got, want)
			}
			if !tt.fail && (leases.lease == nil || *leases.lease.Spec.HolderIdentity != nodeName) {
				t.Errorf("the Lease written: %+v", leases.lease)
			}
		})
	}
}
