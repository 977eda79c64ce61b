package validation

import (
	"fmt"
	"net/netip"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// defaultRoute is the destination that selects everything.
var defaultRoute = netip.MustParsePrefix("0.0.0.0/0")

// inPodOrServiceCIDR says which pod or service CIDR contains ip, the most specific one, or
// returns "". A floating IP there would be announced on the segment by a node, and would
// take that pod's or service's traffic.
func inPodOrServiceCIDR(ip netip.Addr, cluster []ClusterCIDR) string {
	var best *ClusterCIDR
	for i, c := range cluster {
		if (c.Kind == CIDRPods || c.Kind == CIDRServices) && c.Prefix.Contains(ip) && (best == nil || c.Prefix.Bits() > best.Prefix.Bits()) {
			best = &cluster[i]
		}
	}
	if best == nil {
		return ""
	}
	return fmt.Sprintf("is in the cluster's %s %s (%s); a floating IP must be an unused address in the nodes' subnet, outside the pod and service CIDRs", best.Kind, best.Prefix, best.Source)
}

// clusterOverlap says why a destination may not cover the cluster's own addresses without
// the opt-in, or returns nil. optIn names the opt-in in the words of the object's version.
func clusterOverlap(p *field.Path, raw string, dest netip.Prefix, cluster []ClusterCIDR, optIn string) *field.Error {
	dest = dest.Masked()
	if dest == defaultRoute {
		return field.Invalid(p, raw, "is the default route: it selects all of the pods' traffic, to the cluster's own pods, services and nodes included; list the outside ranges you mean, or "+optIn)
	}
	for _, c := range cluster {
		if !dest.Overlaps(c.Prefix) {
			continue
		}
		how := "covers"
		if c.Prefix.Bits() < dest.Bits() {
			how = "is inside"
		}
		return field.Invalid(p, raw, fmt.Sprintf("%s the cluster's %s %s (%s); traffic to the cluster's own addresses must not leave through a gateway: list only outside ranges, or %s", how, c.Kind, c.Prefix, c.Source, optIn))
	}
	return nil
}

// optInV1 and optInV1alpha1 name the opt-in, and say what it does.
const (
	optInV1       = "set spec.allowClusterOverlap: true to steer the addresses outside the cluster in it (the node agents never steer their --cluster-cidrs and the nodes' pod CIDRs)"
	optInV1alpha1 = "write the policy as networking.gke.io/v1 with spec.allowClusterOverlap: true to steer the addresses outside the cluster in it (v1alpha1 has no such field)"
)
