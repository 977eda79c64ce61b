package routing

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
)

// TestSNATDestinations: a gateway may SNAT to an egress IP exactly what some pod could be
// steered there for, whichever policy wins an overlap, and nothing in the cluster.
func TestSNATDestinations(t *testing.T) {
	tests := []struct {
		name     string
		policies []*v1.EgressNATPolicy
		ips      map[string]string
		want     map[netip.Addr][]netip.Prefix
	}{
		{name: "no policies: nothing", want: map[netip.Addr][]netip.Prefix{}},
		{
			name: "two policies on one IP: the union of their destinations, each once",
			policies: []*v1.EgressNATPolicy{
				policy("a", 2, []string{"203.0.113.0/25", "8.8.8.8/32"}, [2]string{"", "a=1"}),
				policy("b", 1, []string{"203.0.113.0/25", "1.1.1.0/24"}, [2]string{"", "b=1"}),
			},
			ips:  map[string]string{"a": "198.51.100.100", "b": "198.51.100.100"},
			want: map[netip.Addr][]netip.Prefix{addr("198.51.100.100"): prefixes("1.1.1.0/24", "8.8.8.8/32", "203.0.113.0/25")},
		},
		{
			name: "one destination, two IPs: each IP has it, whichever policy is older",
			policies: []*v1.EgressNATPolicy{
				policy("old", 2, []string{"203.0.113.0/24"}, [2]string{"", "a=1"}),
				policy("new", 1, []string{"203.0.113.0/24", "203.0.113.128/25"}, [2]string{"", "b=1"}),
			},
			ips: map[string]string{"old": "198.51.100.100", "new": "198.51.100.101"},
			want: map[netip.Addr][]netip.Prefix{
				addr("198.51.100.100"): prefixes("203.0.113.0/24"),
				addr("198.51.100.101"): prefixes("203.0.113.0/24", "203.0.113.128/25"),
			},
		},
		{
			name: "in-cluster destinations are never SNATed",
			policies: []*v1.EgressNATPolicy{
				policy("a", 1, []string{"10.96.0.0/16", "198.51.100.7/32", "203.0.113.10/32"}, [2]string{"", "a=1"}),
			},
			ips:  map[string]string{"a": "198.51.100.100"},
			want: map[netip.Addr][]netip.Prefix{addr("198.51.100.100"): prefixes("203.0.113.10/32")},
		},
		{
			name: "a policy that is not ready, or whose IP is not IPv4, steers nothing",
			policies: []*v1.EgressNATPolicy{
				policy("held-by-none", 1, []string{"203.0.113.0/24"}, [2]string{"", "a=1"}),
				policy("no-gateway", 1, []string{"203.0.113.0/24"}, [2]string{"", "a=1"}),
				policy("v6", 1, []string{"203.0.113.0/24"}, [2]string{"", "a=1"}),
			},
			ips:  map[string]string{"held-by-none": "198.51.100.200", "v6": "2001:db8::1"},
			want: map[netip.Addr][]netip.Prefix{},
		},
	}
	holders := map[string]string{"198.51.100.100": "gw1", "198.51.100.101": "gw2", "2001:db8::1": "gw1"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps := Compile(tt.policies, resolver(tt.ips, holders))
			got := ps.SNATDestinations(cluster)
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("SNATDestinations (-want +got):\n%s", diff)
			}
		})
	}
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}
