package floatingip

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLabelFor(t *testing.T) {
	tests := []struct {
		name, dev, want string
	}{
		{name: "short name", dev: "eth0", want: "eth0:egw"},
		{name: "11 characters fit whole", dev: "enp0s31f6ab", want: "enp0s31f6ab:egw"},
		{name: "12 characters are cut to 11", dev: "enp0s31f6abc", want: "enp0s31f6ab:egw"},
		{name: "15 characters are cut to 11", dev: "uplink-abcdefgh", want: "uplink-abcd:egw"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := labelFor(tt.dev)
			if got != tt.want {
				t.Errorf("labelFor(%q) = %q, want %q", tt.dev, got, tt.want)
			}
			if len(got) > maxLabel {
				t.Errorf("label %q is longer than %d", got, maxLabel)
			}
			if !ours(address{Prefix: netip.MustParsePrefix("198.51.100.100/32"), Label: got}) {
				t.Errorf("an address labelled %q is not recognised as ours", got)
			}
		})
	}
}

func TestOurs(t *testing.T) {
	tests := []struct {
		name string
		a    address
		want bool
	}{
		{name: "labelled /32", a: address{Prefix: pfx("198.51.100.100/32"), Label: "eth0:egw"}, want: true},
		{name: "labelled /32 on a long name", a: address{Prefix: pfx("198.51.100.100/32"), Label: "uplink-abcd:egw"}, want: true},
		{name: "node's own address", a: address{Prefix: pfx("198.51.100.11/24"), Label: "eth0"}},
		{name: "someone else's /32", a: address{Prefix: pfx("198.51.100.100/32"), Label: "eth0"}},
		{name: "an alias of another tool", a: address{Prefix: pfx("198.51.100.100/32"), Label: "eth0:vip"}},
		{name: "our label on a subnet address", a: address{Prefix: pfx("198.51.100.100/24"), Label: "eth0:egw"}},
		{name: "suffix alone", a: address{Prefix: pfx("198.51.100.100/32"), Label: ":egw"}},
		{name: "label that only contains the suffix", a: address{Prefix: pfx("198.51.100.100/32"), Label: "eth0:egwx"}},
		{name: "point to point", a: address{Prefix: pfx("198.51.100.100/32"), Label: "eth0:egw", PointToPoint: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ours(tt.a); got != tt.want {
				t.Errorf("ours(%+v) = %v, want %v", tt.a, got, tt.want)
			}
		})
	}
}

func TestLifetimeSeconds(t *testing.T) {
	tests := []struct {
		name string
		d    time.Duration
		want uint32
	}{
		{name: "a nanosecond is a second", d: time.Nanosecond, want: 1},
		{name: "whole seconds stay", d: 3 * time.Second, want: 3},
		{name: "a fraction rounds up", d: 2*time.Second + time.Millisecond, want: 3},
		{name: "never forever", d: 1 << 62, want: 0xfffffffe},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := lifetimeSeconds(tt.d); got != tt.want {
				t.Errorf("lifetimeSeconds(%v) = %d, want %d", tt.d, got, tt.want)
			}
		})
	}
}

func TestEligible(t *testing.T) {
	eth := link{Index: 2, Name: "eth0", Kind: "device", MAC: mac(1), Up: true}
	tests := []struct {
		name     string
		l        link
		patterns []string
		want     bool
	}{
		{name: "ethernet", l: eth, want: true},
		{name: "loopback", l: link{Name: "lo", Kind: "device", MAC: mac(0), Up: true, Loopback: true}},
		{name: "down", l: link{Name: "eth1", Kind: "device", MAC: mac(1)}},
		{name: "ipip", l: link{Name: "egw0", Kind: "ipip", MAC: mac(1), Up: true}},
		{name: "vxlan", l: link{Name: "flannel.1", Kind: "vxlan", MAC: mac(1), Up: true}},
		{name: "no ARP", l: link{Name: "wg0", Kind: "device", MAC: mac(1), Up: true, NoARP: true}},
		{name: "no MAC", l: link{Name: "tun0", Kind: "tuntap", Up: true}},
		{name: "matches a pattern", l: eth, patterns: []string{"bond*", "eth*"}, want: true},
		{name: "matches no pattern", l: eth, patterns: []string{"bond*"}},
		{name: "a bad pattern matches nothing", l: eth, patterns: []string{"eth["}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := eligible(tt.l, tt.patterns); got != tt.want {
				t.Errorf("eligible = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestChoose(t *testing.T) {
	cands := []candidate{
		{link: link{Index: 3, Name: "bond0"}, subnets: []netip.Prefix{pfx("198.51.100.0/24")}},
		{link: link{Index: 2, Name: "eth0"}, subnets: []netip.Prefix{pfx("198.51.100.0/24"), pfx("203.0.113.0/24")}},
		{link: link{Index: 4, Name: "eth1"}, subnets: []netip.Prefix{pfx("203.0.113.128/25")}},
	}
	tests := []struct {
		name   string
		ip     string
		want   string
		wantOK bool
	}{
		{name: "same subnet on two: first by name", ip: "198.51.100.100", want: "bond0", wantOK: true},
		{name: "only one contains it", ip: "203.0.113.5", want: "eth0", wantOK: true},
		{name: "most specific subnet wins", ip: "203.0.113.200", want: "eth1", wantOK: true},
		{name: "none contains it", ip: "198.18.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := choose(cands, netip.MustParseAddr(tt.ip))
			if ok != tt.wantOK || got.Name != tt.want {
				t.Errorf("choose(%s) = %q, %v; want %q, %v", tt.ip, got.Name, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestInterfaces(t *testing.T) {
	links := []link{
		{Index: 1, Name: "lo", Kind: "device", MAC: mac(0), Up: true, Loopback: true},
		{Index: 3, Name: "eth1", Kind: "device", MAC: mac(3), Up: true},
		{Index: 2, Name: "eth0", Kind: "device", MAC: mac(2), Up: true},
		{Index: 4, Name: "eth2", Kind: "device", MAC: mac(4)},
		{Index: 5, Name: "egw0", Kind: "ipip", Up: true, NoARP: true},
		{Index: 6, Name: "veth1234", Kind: "veth", MAC: mac(6), Up: true},
		{Index: 7, Name: "veth5678", Kind: "veth", MAC: mac(7), Up: true},
	}
	addrs := []address{
		{LinkIndex: 1, Prefix: pfx("127.0.0.1/8"), Label: "lo"},
		{LinkIndex: 2, Prefix: pfx("198.51.100.11/24"), Label: "eth0"},
		{LinkIndex: 2, Prefix: pfx("198.51.100.50/24"), Label: "eth0"},
		{LinkIndex: 2, Prefix: pfx("198.51.100.100/32"), Label: "eth0:egw"},
		{LinkIndex: 3, Prefix: pfx("203.0.113.11/24"), Label: "eth1"},
		{LinkIndex: 3, Prefix: pfx("198.51.100.130/25"), Label: "eth1"},
		{LinkIndex: 4, Prefix: pfx("203.0.113.12/24"), Label: "eth2"},
		{LinkIndex: 5, Prefix: pfx("10.0.0.1/24"), Label: "egw0"},
		{LinkIndex: 6, Prefix: pfx("169.254.1.1/32"), Label: "veth1234"},
	}
	tests := []struct {
		name     string
		patterns []string
		want     []Interface
	}{
		{
			name: "up interfaces with subnets, sorted, without our /32s",
			want: []Interface{
				{Name: "eth0", MAC: mac(2).String(), Subnets: []netip.Prefix{pfx("198.51.100.0/24")}},
				{Name: "eth1", MAC: mac(3).String(), Subnets: []netip.Prefix{pfx("198.51.100.128/25"), pfx("203.0.113.0/24")}},
			},
		},
		{
			name:     "filtered by name",
			patterns: []string{"eth1"},
			want:     []Interface{{Name: "eth1", MAC: mac(3).String(), Subnets: []netip.Prefix{pfx("198.51.100.128/25"), pfx("203.0.113.0/24")}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHolder(Options{Interfaces: tt.patterns}, &fakeKernel{links: links, addrs: fakeAddrs(addrs)})
			got, err := h.Interfaces()
			if err != nil {
				t.Fatalf("Interfaces: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("Interfaces (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr bool
	}{
		{name: "zero value", opts: Options{}},
		{name: "patterns and a schedule", opts: Options{Interfaces: []string{"eth*"}, GARPSchedule: []time.Duration{0, time.Second}}},
		{name: "bad pattern", opts: Options{Interfaces: []string{"eth["}}, wantErr: true},
		{name: "negative delay", opts: Options{GARPSchedule: []time.Duration{-time.Second}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.opts.Validate(); (err != nil) != tt.wantErr {
				t.Errorf("Validate() = %v, want error: %v", err, tt.wantErr)
			}
		})
	}
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func mac(i byte) net.HardwareAddr { return net.HardwareAddr{0x02, 0, 0, 0, 0, i} }
