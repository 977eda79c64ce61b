package validation

import (
	"fmt"
	"net/netip"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
)

// Gateway validates a NetworkGatewayGroup or AnthosNetworkGateway being created (old ==
// nil) or updated. Conflicts with other objects are checked only for IPs this write adds,
// so that an object that was legal stays editable.
func Gateway(self ObjectRef, spec *v1.NetworkGatewayGroupSpec, old *v1.NetworkGatewayGroupSpec, idx Index) (field.ErrorList, []string) {
	var errs field.ErrorList
	var warnings []string
	path := field.NewPath("spec", "floatingIPs")
	had := map[string]bool{}
	if old != nil {
		for _, ip := range old.FloatingIPs {
			had[ip] = true
		}
	}
	seen := map[string]bool{}
	var cluster []ClusterCIDR // looked up once, for the first IP this write adds
	looked := false
	for i, raw := range spec.FloatingIPs {
		p := path.Index(i)
		ip, err := parseIPv4(raw)
		if err != nil {
			errs = append(errs, field.Invalid(p, raw, err.Error()))
			continue
		}
		if seen[raw] {
			errs = append(errs, field.Duplicate(p, raw))
			continue
		}
		seen[raw] = true
		if had[raw] {
			continue
		}
		if why := floatingIPUnusable(ip, idx.NodeSubnetsContaining(ip)); why != "" {
			errs = append(errs, field.Invalid(p, raw, why))
			continue
		}
		if !looked {
			cluster, looked = idx.ClusterCIDRs(), true
		}
		if why := inPodOrServiceCIDR(ip, cluster); why != "" {
			errs = append(errs, field.Invalid(p, raw, why))
			continue
		}
		if other := otherGateway(self, idx.GatewaysWithFloatingIP(raw)); other != nil {
			errs = append(errs, duplicate(p, raw, "already used by "+other.String()+"; floating IPs must be unique across all gateways"))
			continue
		}
		if node, ok := idx.NodeWithAddress(raw); ok {
			errs = append(errs, field.Invalid(p, raw, fmt.Sprintf("is the address of node %s; a floating IP must be an unused address in the nodes' subnet", node)))
			continue
		}
		if node, ok := idx.NodeServingPod(raw); ok {
			errs = append(errs, field.Invalid(p, raw, fmt.Sprintf("is the address of a pod on node %s (its NetworkGatewayNode's status.servedPodAddresses); a floating IP must be an unused address in the nodes' subnet, outside the pods' addresses", node)))
			continue
		}
		if node, ok := idx.RouterOf(raw); ok {
			errs = append(errs, field.Invalid(p, raw, fmt.Sprintf("is a router on the segment (node %s routes through it, see its NetworkGatewayNode's status.interfaces[].routers); a floating IP must be an unused address in the nodes' subnet", node)))
			continue
		}
		if !idx.NodeSubnetContains(ip) {
			warnings = append(warnings, fmt.Sprintf("%s: no node has a subnet that contains %s, so no node can hold it until one does; floating IPs must be in the nodes' layer-2 subnet", p, raw))
		}
	}
	if old != nil {
		warnings = append(warnings, lostIPWarnings(self, old.FloatingIPs, spec.FloatingIPs, idx)...)
	} else if w := sameName(self, idx); w != "" {
		warnings = append(warnings, w)
	}
	return errs, warnings
}

// sameName warns about a new gateway that shares its namespace and name with one of the
// other kind (a migration from AnthosNetworkGateway): it says which one a gatewayRef of
// that name means, the rule package routing applies everywhere.
func sameName(self ObjectRef, idx Index) string {
	key := self.Namespace + "/" + self.Name
	switch self.Kind {
	case KindNetworkGatewayGroup:
		if idx.AnthosNetworkGatewayExists(self.Namespace, self.Name) {
			return fmt.Sprintf("AnthosNetworkGateway %s has the same name: a v1 policy's gatewayRef %s means this NetworkGatewayGroup, and its first floating IP is the policy's egress IP; the AnthosNetworkGateway serves only policies that name one of its floating IPs as egressSourceIP", key, key)
		}
	case KindAnthosNetworkGateway:
		if _, found := idx.NetworkGatewayGroup(self.Namespace, self.Name); found {
			return fmt.Sprintf("NetworkGatewayGroup %s has the same name: a v1 policy's gatewayRef %s means the NetworkGatewayGroup, never this AnthosNetworkGateway; this gateway serves only policies that name one of its floating IPs as egressSourceIP", key, key)
		}
	}
	return ""
}

// GatewayDelete returns the warnings for deleting a gateway: the policies it leaves
// without an egress IP. Deletion itself is always allowed.
func GatewayDelete(self ObjectRef, spec *v1.NetworkGatewayGroupSpec, idx Index) []string {
	return lostIPWarnings(self, spec.FloatingIPs, nil, idx)
}

// lostIPWarnings names the policies whose egress IP goes away when a gateway's floating IPs
// change from before to after (nil after: the gateway is deleted).
func lostIPWarnings(self ObjectRef, before, after []string, idx Index) []string {
	var warnings []string
	kept := map[string]bool{}
	for _, ip := range after {
		kept[ip] = true
	}
	if self.Kind == KindNetworkGatewayGroup && len(before) > 0 {
		if policies := idx.PoliciesReferencing(self.Namespace, self.Name); len(policies) > 0 {
			switch {
			case after == nil:
				warnings = append(warnings, fmt.Sprintf("%s to %s; until it exists again, the traffic they select is dropped, not sent with another source IP", subject(policies, "refers", "refer"), self))
			case len(after) == 0:
				warnings = append(warnings, fmt.Sprintf("%s the first floating IP of %s, which now has none; the traffic they select is dropped until it has one", subject(policies, "uses", "use"), self))
			case after[0] != before[0]:
				warnings = append(warnings, fmt.Sprintf("%s the first floating IP of %s as egress IP; it changes from %s to %s", subject(policies, "uses", "use"), self, before[0], after[0]))
			}
		}
	}
	for _, ip := range before {
		if kept[ip] {
			continue
		}
		if policies := idx.PoliciesWithEgressSourceIP(ip); len(policies) > 0 {
			warnings = append(warnings, fmt.Sprintf("%s %s as egressSourceIP; without it in a gateway, the traffic they select is dropped", subject(policies, "uses", "use"), ip))
		}
	}
	return warnings
}

// subject names policies with the verb that agrees with them: "EgressNATPolicy a uses",
// "EgressNATPolicies a, b use".
func subject(policies []string, singular, plural string) string {
	if len(policies) == 1 {
		return "EgressNATPolicy " + policies[0] + " " + singular
	}
	return "EgressNATPolicies " + strings.Join(policies, ", ") + " " + plural
}

func otherGateway(self ObjectRef, owners []ObjectRef) *ObjectRef {
	for _, o := range owners {
		if o != self {
			return &o
		}
	}
	return nil
}

// duplicate is field.Duplicate with a detail that names the other object.
func duplicate(p *field.Path, value any, detail string) *field.Error {
	return &field.Error{Type: field.ErrorTypeDuplicate, Field: p.String(), BadValue: value, Detail: detail}
}

// parseIPv4 accepts only the dotted-quad form of an IPv4 address.
func parseIPv4(raw string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(raw)
	switch {
	case err != nil:
		return netip.Addr{}, fmt.Errorf("must be an IPv4 address such as 192.168.1.100")
	case !ip.Is4():
		return netip.Addr{}, fmt.Errorf("must be an IPv4 address such as 192.168.1.100: the egress NAT gateway is IPv4-only")
	}
	return ip, nil
}
