package floatingip

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"path"
	"slices"
	"strings"
	"time"
)

// The decisions, as pure functions of what the kernel reports.

const (
	labelSuffix = ":egw"
	// maxLabel is IFNAMSIZ less the terminating NUL.
	maxLabel = 15
	// maxLifetime is one second short of 0xffffffff, which the kernel reads as forever.
	maxLifetime = math.MaxUint32 - 1
)

// tunnelKinds are link types that encapsulate: a floating IP there would never be
// answered for on the wire.
var tunnelKinds = map[string]bool{
	"ipip": true, "sit": true, "gre": true, "gretap": true, "ip6gre": true, "ip6gretap": true,
	"ip6tnl": true, "vti": true, "vti6": true, "vxlan": true, "geneve": true, "wireguard": true,
}

// labelFor is the IFA label that marks a floating IP on dev: "<dev>:egw", with dev cut
// short to fit 15 characters, as the kernel cuts labels when it renames a device.
func labelFor(dev string) string {
	if len(dev)+len(labelSuffix) > maxLabel {
		dev = dev[:maxLabel-len(labelSuffix)]
	}
	return dev + labelSuffix
}

// ours reports whether a Holder added a: an IPv4 /32 labelled "<something>:egw".
func ours(a address) bool {
	return a.Prefix.Addr().Is4() && a.Prefix.Bits() == 32 && !a.PointToPoint &&
		len(a.Label) > len(labelSuffix) && strings.HasSuffix(a.Label, labelSuffix)
}

// lifetimeSeconds rounds d up to whole seconds, so the kernel never drops an address
// before its grant ends.
func lifetimeSeconds(d time.Duration) uint32 {
	s := (d + time.Second - 1) / time.Second
	return uint32(min(max(s, 1), maxLifetime))
}

// candidate is an interface that may hold floating IPs, with its subnets.
type candidate struct {
	link    link
	subnets []netip.Prefix
}

// eligible reports whether floating IPs may go on l: an up, ARP-speaking Ethernet
// interface that is not loopback nor a tunnel, and whose name matches one of the
// patterns (any name, if there are none).
func eligible(l link, patterns []string) bool {
	if l.Loopback || !l.Up || l.NoARP || tunnelKinds[l.Kind] || len(l.MAC) != 6 {
		return false
	}
	if len(patterns) == 0 {
		return true
	}
	return slices.ContainsFunc(patterns, func(p string) bool {
		ok, _ := path.Match(p, l.Name) // Options.Validate reports bad patterns
		return ok
	})
}

// candidates are the eligible interfaces that have an IPv4 subnet, sorted by name. A
// subnet comes from an address with a prefix shorter than /32 that is not one of ours;
// an interface with only /32s (a pod's host-side veth, say) has none.
func candidates(links []link, addrs []address, patterns []string) []candidate {
	var out []candidate
	for _, l := range links {
		if !eligible(l, patterns) {
			continue
		}
		var subnets []netip.Prefix
		for _, a := range addrs {
			if a.LinkIndex == l.Index && a.Prefix.Addr().Is4() && a.Prefix.Bits() < 32 &&
				!a.PointToPoint && !ours(a) {
				subnets = append(subnets, a.Prefix.Masked())
			}
		}
		if len(subnets) == 0 {
			continue
		}
		slices.SortFunc(subnets, comparePrefix)
		out = append(out, candidate{link: l, subnets: slices.Compact(subnets)})
	}
	slices.SortFunc(out, func(a, b candidate) int {
		return cmp.Or(strings.Compare(a.link.Name, b.link.Name), cmp.Compare(a.link.Index, b.link.Index))
	})
	return out
}

func comparePrefix(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}

// choose picks the interface for ip: the one with the most specific subnet containing
// it, and of those the first by name.
func choose(cands []candidate, ip netip.Addr) (link, bool) {
	best, bestBits := -1, -1
	for i, c := range cands {
		for _, s := range c.subnets {
			if s.Contains(ip) && s.Bits() > bestBits {
				best, bestBits = i, s.Bits()
			}
		}
	}
	if best < 0 {
		return link{}, false
	}
	return cands[best].link, true
}

// op is one change to one floating IP.
type op struct {
	ip       netip.Addr
	link     link
	label    string
	lifetime uint32
}

// plan is what Reconcile changes, and why it left some wanted IPs alone.
type plan struct {
	remove, refresh, add []op
	errs                 []error
}

// makePlan decides how to make the node hold exactly want. A wanted IP already held on
// the interface chosen for it is refreshed; one held elsewhere moves there. An IP it
// cannot place (no subnet contains it, or someone else's address has it) is an error,
// and what we already hold of it is left to the kernel lifetime rather than removed or
// refreshed. A lifetime that is not positive means the grant has lapsed: not wanted.
func makePlan(links []link, addrs []address, want map[netip.Addr]time.Duration, patterns []string) plan {
	byIndex := make(map[int]link, len(links))
	for _, l := range links {
		byIndex[l.Index] = l
	}
	held := map[netip.Addr][]address{}
	foreign := map[netip.Addr]address{}
	for _, a := range addrs {
		if ours(a) {
			held[a.Prefix.Addr()] = append(held[a.Prefix.Addr()], a)
		} else if _, dup := foreign[a.Prefix.Addr()]; !dup {
			foreign[a.Prefix.Addr()] = a
		}
	}
	cands := candidates(links, addrs, patterns)

	var p plan
	keep := map[address]bool{}
	for _, ip := range slices.SortedFunc(maps.Keys(want), netip.Addr.Compare) {
		d := want[ip]
		switch {
		case !ip.Is4():
			p.errs = append(p.errs, fmt.Errorf("floating IP %s is not IPv4; only IPv4 floating IPs are supported, take it out of the gateway", ip))
			continue
		case d <= 0:
			continue
		}
		if f, ok := foreign[ip]; ok {
			p.errs = append(p.errs, fmt.Errorf("floating IP %s is already on %s as %s, which egressgw did not add: not taking it over; remove it from the node or take the IP out of the gateway",
				ip, byIndex[f.LinkIndex].Name, f.Prefix))
			markAll(keep, held[ip])
			continue
		}
		l, ok := choose(cands, ip)
		if !ok {
			p.errs = append(p.errs, fmt.Errorf("floating IP %s: no interface subnet contains it (%s); give an up interface of this node an address in its subnet, or grant the IP to a node that has one",
				ip, describe(cands)))
			markAll(keep, held[ip])
			continue
		}
		o := op{ip: ip, link: l, label: labelFor(l.Name), lifetime: lifetimeSeconds(d)}
		if i := slices.IndexFunc(held[ip], func(a address) bool { return a.LinkIndex == l.Index }); i >= 0 {
			o.label = held[ip][i].Label // a renamed device keeps the old label
			keep[held[ip][i]] = true
			p.refresh = append(p.refresh, o)
		} else {
			p.add = append(p.add, o)
		}
	}
	for _, ip := range slices.SortedFunc(maps.Keys(held), netip.Addr.Compare) {
		for _, a := range held[ip] {
			if !keep[a] {
				l, ok := byIndex[a.LinkIndex]
				if !ok {
					l = link{Index: a.LinkIndex, Name: fmt.Sprintf("ifindex %d", a.LinkIndex)}
				}
				p.remove = append(p.remove, op{ip: ip, link: l, label: a.Label})
			}
		}
	}
	return p
}

func markAll(keep map[address]bool, as []address) {
	for _, a := range as {
		keep[a] = true
	}
}

// describe lists the candidate subnets for an error message.
func describe(cands []candidate) string {
	if len(cands) == 0 {
		return "this node has no up interface with an IPv4 subnet"
	}
	var parts []string
	for _, c := range cands {
		for _, s := range c.subnets {
			parts = append(parts, c.link.Name+" "+s.String())
		}
	}
	return "interface subnets: " + strings.Join(parts, ", ")
}

// heldIPs are the distinct floating IPs among addrs, sorted.
func heldIPs(addrs []address) []netip.Addr {
	var out []netip.Addr
	for _, a := range addrs {
		if ours(a) {
			out = append(out, a.Prefix.Addr())
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}
