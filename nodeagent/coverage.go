package nodeagent

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/egressgw/egressgw/apiserver/routing"
)

// An IPAM that ignores Node.spec.podCIDRs (Calico IPAM, Cilium cluster-pool) gives pods
// addresses that no pod CIDR the agent knows contains: the nft backstop would not catch
// them before their veth has a program, and gateways would drop their steered packets as
// no pod's. So each pass learns the addresses of this node's own pods outside its pod
// CIDRs; the backstop takes them all, and the report lists them (servedPodAddresses) for
// the other nodes' gateways. What the agent cannot cover, it names in its
// NetworkGatewayNode's PodsCovered condition and counts in egressgw_agent_pods_uncovered.

// ConditionPodsCovered is the NetworkGatewayNode condition that is False while a pod of the
// node is outside the backstop or the gateways' source filter; its message names each pod
// and why.
const ConditionPodsCovered = "PodsCovered"

// maxServedAddresses is how many served pod addresses a report lists: the API's bound on
// status.servedPodAddresses.
const maxServedAddresses = 1024

// maxNamedPods is how many uncovered pods the condition names.
const maxNamedPods = 20

// coverage is what a pass learns of the addresses of this node's pods.
type coverage struct {
	// served are the addresses (/32) of this node's pods outside its pod CIDRs that
	// gateways accept, sorted: all of them go into the backstop.
	served []netip.Prefix
	// reported are the lowest maxServedAddresses of served: the report lists them.
	reported []netip.Prefix
	// uncovered are the pods neither covers, as "namespace/name: why", sorted.
	uncovered []string
}

func (s snapshot) coverage(ps *routing.Policies) coverage {
	var c coverage
	owner := map[netip.Prefix]string{}
	for _, p := range s.pods {
		if p.Spec.HostNetwork || routing.Finished(p) {
			continue
		}
		key := p.Namespace + "/" + p.Name
		ips := routing.PodIPv4s(p)
		if len(ips) == 0 && p.Status.Phase == corev1.PodRunning && len(ps.Selecting(routing.PodOf(p), s.namespaces[p.Namespace])) > 0 {
			c.uncovered = append(c.uncovered, key+": running and selected by a policy, with no IPv4 address in status.podIPs for the agent to install")
		}
		for _, ip := range ips {
			if routing.ContainsAny(s.podCIDRs, ip) {
				continue
			}
			addr := netip.PrefixFrom(ip, 32)
			if err := s.addresses.CheckServed(addr); err != nil {
				c.uncovered = append(c.uncovered, fmt.Sprintf("%s: its address is no pod's to a gateway (%v)", key, err))
				continue
			}
			c.served = append(c.served, addr)
			owner[addr] = key
		}
	}
	c.served = routing.SortPrefixes(c.served)
	c.reported = c.served[:min(len(c.served), maxServedAddresses)]
	for _, addr := range c.served[len(c.reported):] {
		c.uncovered = append(c.uncovered, fmt.Sprintf("%s: %s is past the %d addresses servedPodAddresses lists; gateways on other nodes drop its steered packets",
			owner[addr], addr, maxServedAddresses))
	}
	slices.Sort(c.uncovered)
	return c
}

// message is the PodsCovered condition's message when False: empty when every pod is
// covered.
func (c coverage) message() string {
	return namePods("%d pods not covered", c.uncovered)
}

// namePods words a condition's message about pods: head with their count, then the first
// maxNamedPods entries, then how many more; empty for no pods.
func namePods(head string, entries []string) string {
	if len(entries) == 0 {
		return ""
	}
	named := entries[:min(len(entries), maxNamedPods)]
	msg := fmt.Sprintf(head, len(entries)) + ": " + strings.Join(named, "; ")
	if more := len(entries) - len(named); more > 0 {
		msg += fmt.Sprintf("; and %d more", more)
	}
	return msg
}
