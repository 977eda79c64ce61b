package validation

import (
	"fmt"
	"net/netip"
	"strings"

	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/apiserver/apis/networking/v1alpha1"
)

// Policy validates an EgressNATPolicy v1 being created (old == nil) or updated. Checks
// against other objects run only for references this write changes.
func Policy(p *v1.EgressNATPolicy, old *v1.EgressNATPolicy, idx Index) (field.ErrorList, []string) {
	spec := field.NewPath("spec")
	errs := sources(p.Spec.Sources, spec.Child("sources"))
	cidrs := make([]string, len(p.Spec.Destinations))
	for i, d := range p.Spec.Destinations {
		cidrs[i] = d.CIDR
	}
	at := func(i int) *field.Path { return spec.Child("destinations").Index(i).Child("cidr") }
	destErrs, warnings := destinations(cidrs, spec.Child("destinations"), at)
	errs = append(errs, destErrs...)
	if !p.Spec.AllowClusterOverlap {
		var had []string
		if old != nil {
			for _, d := range old.Spec.Destinations {
				had = append(had, d.CIDR)
			}
		}
		errs = append(errs, clusterDestinations(cidrs, had, at, idx, optInV1)...)
	}
	if p.Spec.Action != v1.ActionSNAT {
		errs = append(errs, field.NotSupported(spec.Child("action"), p.Spec.Action, []string{string(v1.ActionSNAT)}))
	}

	ref, ip := p.Spec.GatewayRef, p.Spec.EgressSourceIP
	switch {
	case ref != nil && ip != "":
		errs = append(errs, field.Forbidden(spec.Child("egressSourceIP"), "set gatewayRef or egressSourceIP, not both; egressSourceIP exists only for policies written as v1alpha1"))
	case ref == nil && ip == "":
		errs = append(errs, field.Required(spec.Child("gatewayRef"), "name the NetworkGatewayGroup whose first floating IP this policy uses, e.g. {name: default, namespace: kube-system}"))
	case ref != nil:
		var oldRef *v1.GatewayReference
		if old != nil {
			oldRef = old.Spec.GatewayRef
		}
		errs = append(errs, gatewayRef(ref, oldRef, spec.Child("gatewayRef"), idx)...)
	default:
		var oldIP string
		if old != nil {
			oldIP = old.Spec.EgressSourceIP
		}
		errs = append(errs, egressSourceIP(p.Name, ip, oldIP, spec.Child("egressSourceIP"), idx)...)
	}
	return errs, warnings
}

// LegacyPolicy validates an EgressNATPolicy v1alpha1 being created (old == nil) or updated.
func LegacyPolicy(p *v1alpha1.EgressNATPolicy, old *v1alpha1.EgressNATPolicy, idx Index) (field.ErrorList, []string) {
	spec := field.NewPath("spec")
	errs := sources(p.Spec.Egress, spec.Child("egress"))
	destErrs, warnings := destinations(p.Spec.DestinationCIDRs, spec.Child("destinationCIDRs"), spec.Child("destinationCIDRs").Index)
	errs = append(errs, destErrs...)
	var oldIP string
	var had []string
	if old != nil {
		oldIP, had = old.Spec.EgressSourceIP, old.Spec.DestinationCIDRs
	}
	// A policy written as v1 with the opt-in, read and written back as v1alpha1, carries
	// it in conversion's annotation.
	if !v1alpha1.AllowsClusterOverlap(p) {
		errs = append(errs, clusterDestinations(p.Spec.DestinationCIDRs, had, spec.Child("destinationCIDRs").Index, idx, optInV1alpha1)...)
	}
	if p.Spec.EgressSourceIP == "" {
		errs = append(errs, field.Required(spec.Child("egressSourceIP"), "set it to a floating IP of an AnthosNetworkGateway, e.g. 192.168.1.100"))
	} else {
		errs = append(errs, egressSourceIP(p.Name, p.Spec.EgressSourceIP, oldIP, spec.Child("egressSourceIP"), idx)...)
	}
	return errs, warnings
}

func sources(list []v1.EgressSource, path *field.Path) field.ErrorList {
	if len(list) == 0 {
		return field.ErrorList{field.Required(path, "list at least one source; a source selects pods with namespaceSelector and podSelector")}
	}
	var errs field.ErrorList
	opts := metav1validation.LabelSelectorValidationOptions{}
	for i, s := range list {
		p := path.Index(i)
		if s.NamespaceSelector == nil && s.PodSelector == nil {
			errs = append(errs, field.Required(p, "set namespaceSelector, podSelector or both; an empty selector {} selects everything"))
			continue
		}
		errs = append(errs, metav1validation.ValidateLabelSelector(s.NamespaceSelector, opts, p.Child("namespaceSelector"))...)
		errs = append(errs, metav1validation.ValidateLabelSelector(s.PodSelector, opts, p.Child("podSelector"))...)
	}
	return errs
}

// destinations validates destination CIDRs. A CIDR with host bits set is accepted with a
// warning that shows the range it stands for: the dataplane masks it, and rejecting it would
// break manifests that work elsewhere.
func destinations(cidrs []string, path *field.Path, at func(int) *field.Path) (field.ErrorList, []string) {
	if len(cidrs) == 0 {
		return field.ErrorList{field.Required(path, "list at least one IPv4 CIDR, e.g. 8.8.8.0/24")}, nil
	}
	var errs field.ErrorList
	var warnings []string
	seen := map[netip.Prefix]int{}
	for i, raw := range cidrs {
		prefix, err := netip.ParsePrefix(raw)
		switch {
		case err != nil:
			errs = append(errs, field.Invalid(at(i), raw, "must be an IPv4 CIDR such as 8.8.8.0/24"))
			continue
		case !prefix.Addr().Is4():
			errs = append(errs, field.Invalid(at(i), raw, "must be an IPv4 CIDR such as 8.8.8.0/24: the egress NAT gateway is IPv4-only"))
			continue
		}
		masked := prefix.Masked()
		if masked != prefix {
			warnings = append(warnings, fmt.Sprintf("%s: %s has host bits set; it selects %s", at(i), raw, masked))
		}
		if j, ok := seen[masked]; ok {
			errs = append(errs, duplicate(at(i), raw, fmt.Sprintf("the same range as %s", at(j))))
			continue
		}
		seen[masked] = i
	}
	return errs, warnings
}

// clusterDestinations refuses the destinations this write adds (those not in had, as
// ranges) that cover the cluster's own addresses. Ones that do not parse were refused by
// destinations already.
func clusterDestinations(cidrs, had []string, at func(int) *field.Path, idx Index, optIn string) field.ErrorList {
	kept := map[netip.Prefix]bool{}
	for _, raw := range had {
		if p, err := netip.ParsePrefix(raw); err == nil {
			kept[p.Masked()] = true
		}
	}
	var errs field.ErrorList
	var cluster []ClusterCIDR // looked up once, for the first destination this write adds
	looked := false
	for i, raw := range cidrs {
		p, err := netip.ParsePrefix(raw)
		if err != nil || !p.Addr().Is4() || kept[p.Masked()] {
			continue
		}
		if !looked {
			cluster, looked = idx.ClusterCIDRs(), true
		}
		if e := clusterOverlap(at(i), raw, p, cluster, optIn); e != nil {
			errs = append(errs, e)
		}
	}
	return errs
}

func gatewayRef(ref, old *v1.GatewayReference, path *field.Path, idx Index) field.ErrorList {
	var errs field.ErrorList
	if ref.Name == "" {
		errs = append(errs, field.Required(path.Child("name"), "name the NetworkGatewayGroup, e.g. default"))
	}
	if ref.Namespace == "" {
		errs = append(errs, field.Required(path.Child("namespace"), "give the NetworkGatewayGroup's namespace, e.g. kube-system"))
	}
	if len(errs) > 0 || (old != nil && *old == *ref) {
		return errs
	}
	key := ref.Namespace + "/" + ref.Name
	ips, found := idx.NetworkGatewayGroup(ref.Namespace, ref.Name)
	switch {
	case !found && idx.AnthosNetworkGatewayExists(ref.Namespace, ref.Name):
		return field.ErrorList{notFound(path, key, fmt.Sprintf("no NetworkGatewayGroup %s exists, only an AnthosNetworkGateway; a v1 policy refers to a NetworkGatewayGroup, so create one with the same floating IPs, or write this policy as v1alpha1 with egressSourceIP", key))}
	case !found:
		return field.ErrorList{notFound(path, key, fmt.Sprintf("no NetworkGatewayGroup %s exists; create it first, or fix gatewayRef", key))}
	case len(ips) == 0:
		return field.ErrorList{field.Invalid(path, key, fmt.Sprintf("NetworkGatewayGroup %s has no floating IPs; add one to its spec.floatingIPs (the first one is this policy's egress IP)", key))}
	}
	return nil
}

func egressSourceIP(policy, ip, old string, path *field.Path, idx Index) field.ErrorList {
	if _, err := parseIPv4(ip); err != nil {
		return field.ErrorList{field.Invalid(path, ip, err.Error())}
	}
	if ip == old {
		return nil
	}
	if len(idx.GatewaysWithFloatingIP(ip)) == 0 {
		return field.ErrorList{field.Invalid(path, ip, "is not a floating IP of any AnthosNetworkGateway or NetworkGatewayGroup; add it to a gateway's spec.floatingIPs first")}
	}
	var others []string
	for _, name := range idx.PoliciesWithEgressSourceIP(ip) {
		if name != policy {
			others = append(others, name)
		}
	}
	if len(others) > 0 {
		return field.ErrorList{duplicate(path, ip, fmt.Sprintf("already used by EgressNATPolicy %s; every policy needs its own egressSourceIP", strings.Join(others, ", ")))}
	}
	return nil
}

func notFound(p *field.Path, value any, detail string) *field.Error {
	return &field.Error{Type: field.ErrorTypeNotFound, Field: p.String(), BadValue: value, Detail: detail}
}
