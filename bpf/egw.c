//go:build ignore

/*
 * Copyright The egressgw Authors.
 * SPDX-License-Identifier: Apache-2.0
 *
 * The egressgw dataplane: classify packets leaving local pods, send steered ones, as
 * they are, to the virtual MAC of their egress IP, and let the node holding that IP
 * SNAT them only while its grant is valid. docs/dataplane.md walks a packet through all
 * three programs.
 */
#include "egw.h"

/* A grant is valid until it expires, and only with an id the mark can carry. */
static __always_inline int egw_grant_valid(const struct egw_grant *grant)
{
	return egw_valid_id(grant->snat_id) && grant->expires_ns > bpf_ktime_get_ns();
}

/*
 * egw_held reports whether this node holds a valid grant for egress_ip, and its SNAT id.
 */
static __always_inline int egw_held(__be32 egress_ip, __u32 *snat_id)
{
	struct egw_grant *grant;

	grant = bpf_map_lookup_elem(&egw_grants, &egress_ip);
	if (!grant || !egw_grant_valid(grant))
		return 0;
	*snat_id = grant->snat_id;
	return 1;
}

/*
 * The route of set_id's trie for key's destination; NULL if there is none, or if the set
 * has no trie (everything passes, as with an empty one).
 */
static __always_inline struct egw_route *egw_set_route(__u32 set_id, struct egw_dst_key *key)
{
	void *routes = bpf_map_lookup_elem(&egw_set_routes, &set_id);

	return routes ? bpf_map_lookup_elem(routes, key) : NULL;
}

/*
 * tcx ingress on the host side of each local pod's veth: packets from the pod. IPv4
 * from any source but the pod's own (egw_pod_sources) is dropped: it would classify as
 * the pod whose address it claims.
 *
 * Marks only. The packet then goes through the node's FORWARD chain, where the CNI
 * enforces network policy, before routing by mark takes a steered packet to an uplink.
 */
SEC("tcx/ingress")
int egw_from_pod(struct __sk_buff *skb)
{
	struct egw_dst_key key = { .prefixlen = 32 };
	struct egw_pod_source src = {};
	__u32 *set, set_id, snat_id;
	struct egw_route *route;
	__be32 saddr, *egress_ip;
	int known;

	if (skb->protocol != bpf_htons(ETH_P_IP))
		return egw_count(skb, EGW_STAT_FROM_POD_NOT_IPV4, TCX_NEXT);

	/* Shorter than an IPv4 header: the stack would drop it too. */
	if (egw_ipv4_addrs(skb, &saddr, &key.dst) < 0)
		return egw_count(skb, EGW_STAT_FROM_POD_MALFORMED, TCX_DROP);

	/* A source that is not the pod's own is another pod's, or nobody's: classified, it
	 * would leave with that pod's egress IP. Drop it before anything reads saddr. */
	src.ifindex = skb->ifindex;
	src.saddr = saddr;
	if (!bpf_map_lookup_elem(&egw_pod_sources, &src))
		return egw_count(skb, EGW_STAT_FROM_POD_DROP_SPOOFED, TCX_DROP);

	/* A pod the agent does not know yet gets the unknown set: fail closed. */
	set = bpf_map_lookup_elem(&egw_pods, &saddr);
	known = set != NULL;
	set_id = known ? *set : EGW_UNKNOWN_SET;

	route = egw_set_route(set_id, &key);
	if (!route) {
		egw_set_mark(skb, EGW_MARK_CLASSIFIED, 0);
		return egw_count(skb, known ? EGW_STAT_FROM_POD_PASS :
				 EGW_STAT_FROM_POD_UNKNOWN_POD_PASS, TCX_NEXT);
	}

	switch (route->verdict) {
	case EGW_VERDICT_IN_CLUSTER:
		egw_set_mark(skb, EGW_MARK_CLASSIFIED, 0);
		return egw_count(skb, EGW_STAT_FROM_POD_IN_CLUSTER, TCX_NEXT);
	case EGW_VERDICT_STEER:
		/* An id that does not fit the mark would alias another egress IP. */
		if (!egw_valid_id(route->egress_id))
			break;
		/* No egress IP for the id: egw_uplink_out drops what is marked for it. */
		egress_ip = bpf_map_lookup_elem(&egw_egress, &route->egress_id);
		if (!egress_ip) {
			egw_set_mark(skb, EGW_MARK_STEER, route->egress_id);
			return egw_count(skb, EGW_STAT_FROM_POD_STEER, TCX_NEXT);
		}
		/* This node holds the egress IP: SNAT here. Sent to its own virtual MAC, the
		 * frame would never come back: a switch does not send a frame out of the
		 * port it came in by. */
		if (egw_held(*egress_ip, &snat_id)) {
			egw_set_mark(skb, EGW_MARK_SNAT, snat_id);
			return egw_count(skb, EGW_STAT_FROM_POD_LOCAL_SNAT, TCX_NEXT);
		}
		/* On none of this node's subnets, but routed to: the routed path, whose own
		 * table gives the packet the MTU left after the outer header, so that the
		 * kernel sends the pod frag-needed before anything is too big to wrap. Not
		 * routed to either: steered, egw_uplink_out drops it (no uplink). */
		if (!bpf_map_lookup_elem(&egw_uplinks, egress_ip) &&
		    bpf_map_lookup_elem(&egw_routed, egress_ip)) {
			egw_set_mark(skb, EGW_MARK_ROUTE, route->egress_id);
			return egw_count(skb, EGW_STAT_FROM_POD_ROUTE, TCX_NEXT);
		}
		egw_set_mark(skb, EGW_MARK_STEER, route->egress_id);
		return egw_count(skb, EGW_STAT_FROM_POD_STEER, TCX_NEXT);
	}

	/* DROP, and anything this program does not understand: fail closed. */
	return egw_count(skb, known ? EGW_STAT_FROM_POD_DROP_POLICY :
			 EGW_STAT_FROM_POD_DROP_UNKNOWN_POD, TCX_DROP);
}

/*
 * A steered packet, routed by its mark to an uplink: address it to the virtual MAC of
 * its egress IP, which the switch delivers to the node that holds the IP, and send it
 * out of the uplink on the IP's subnet (egw_uplinks), moving it there if the route chose
 * another. The packet itself is not touched: no tunnel header, no MTU lost, no offload
 * given up. Should nobody on the segment hold the IP, the switch floods the frame and
 * every node drops it, as addressed to another host.
 */
static __always_inline int egw_steer_out(struct __sk_buff *skb)
{
	struct egw_uplink *uplink;
	__u8 vmac[ETH_ALEN];
	__be32 *egress_ip;
	__u32 id;

	id = (skb->mark >> EGW_MARK_ID_SHIFT) & EGW_MARK_ID_MAX;
	egress_ip = bpf_map_lookup_elem(&egw_egress, &id);
	if (!egress_ip)
		return egw_count(skb, EGW_STAT_UPLINK_OUT_NO_EGRESS_IP, TCX_DROP);
	/* Not on a subnet of this node: no switch here can reach its holder. */
	uplink = bpf_map_lookup_elem(&egw_uplinks, egress_ip);
	if (!uplink)
		return egw_count(skb, EGW_STAT_UPLINK_OUT_NO_UPLINK, TCX_DROP);
	egw_vmac(vmac, *egress_ip);
	if (bpf_skb_store_bytes(skb, 0, vmac, ETH_ALEN, 0) < 0)
		return egw_count(skb, EGW_STAT_UPLINK_OUT_NO_UPLINK, TCX_DROP);
	/* Ours no more: the other uplink's program, after the redirect, lets it pass. */
	egw_write_mark(skb, skb->mark & EGW_MARK_KEEP);
	if (uplink->ifindex == skb->ifindex)
		return egw_count(skb, EGW_STAT_UPLINK_OUT_STEER, TCX_NEXT);
	if (bpf_skb_store_bytes(skb, ETH_ALEN, uplink->mac, ETH_ALEN, 0) < 0)
		return egw_count(skb, EGW_STAT_UPLINK_OUT_NO_UPLINK, TCX_DROP);
	egw_count(skb, EGW_STAT_UPLINK_OUT_STEER, TCX_NEXT);
	return bpf_redirect(uplink->ifindex, 0);
}

/*
 * A steered packet whose egress IP is on none of this node's subnets: wrap it in an
 * outer IPv4 header (IPv4-in-IPv4) from this node's address to the egress IP, and send it
 * by the node's route to the egress IP (egw_routed; the kernel resolves the next hop).
 * The routed node network delivers it to the egress IP's segment, where the router
 * addresses it, as any packet for the IP, to the IP's virtual MAC: the holder takes it
 * in, whichever node that is, and a failover changes nothing here. The routed table gave
 * the packet an MTU 20 bytes under the uplink's, so the outer packet fits; GSO keeps its
 * segment size.
 */
static __always_inline int egw_route_out(struct __sk_buff *skb)
{
	struct iphdr inner, outer = {};
	struct egw_routed *routed;
	__be32 *egress_ip, daddr;
	__u32 id, len;

	id = (skb->mark >> EGW_MARK_ID_SHIFT) & EGW_MARK_ID_MAX;
	egress_ip = bpf_map_lookup_elem(&egw_egress, &id);
	if (!egress_ip)
		return egw_count(skb, EGW_STAT_UPLINK_OUT_NO_EGRESS_IP, TCX_DROP);
	daddr = *egress_ip;
	routed = bpf_map_lookup_elem(&egw_routed, &daddr);
	if (!routed)
		return egw_count(skb, EGW_STAT_UPLINK_OUT_NO_ROUTE, TCX_DROP);
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &inner, sizeof(inner)) < 0)
		return egw_count(skb, EGW_STAT_UPLINK_OUT_NO_ROUTE, TCX_DROP);

	if (bpf_skb_adjust_room(skb, EGW_ENCAP_LEN, BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_ENCAP_L3_IPV4) < 0)
		return egw_count(skb, EGW_STAT_UPLINK_OUT_NO_ROUTE, TCX_DROP);
	len = skb->len - ETH_HLEN;
	outer.version = 4;
	outer.ihl = EGW_ENCAP_LEN / 4;
	outer.tos = inner.tos;
	/* A GSO packet's length may pass 64 KiB; GSO writes each segment's own. */
	outer.tot_len = bpf_htons(len > 0xffff ? 0xffff : len);
	outer.id = inner.id;
	outer.frag_off = inner.frag_off & bpf_htons(IP_DF);
	outer.ttl = EGW_ENCAP_TTL;
	outer.protocol = IPPROTO_IPIP;
	outer.saddr = routed->saddr;
	outer.daddr = daddr;
	outer.check = egw_csum_fold(bpf_csum_diff(0, 0, (__be32 *)&outer, sizeof(outer), 0));
	if (bpf_skb_store_bytes(skb, ETH_HLEN, &outer, sizeof(outer), 0) < 0)
		return egw_count(skb, EGW_STAT_UPLINK_OUT_NO_ROUTE, TCX_DROP);

	/* Ours no more: the uplink's program, after the redirect, lets it pass. */
	egw_write_mark(skb, skb->mark & EGW_MARK_KEEP);
	egw_count(skb, EGW_STAT_UPLINK_OUT_ENCAP, TCX_NEXT);
	/* No next hop given: the kernel routes the outer packet out of the interface and
	 * fills in the MACs from its neighbour table. */
	return bpf_redirect_neigh(routed->ifindex, NULL, 0, 0);
}

/*
 * ARP leaving an uplink. No ARP claims a floating IP whose grant has lapsed: the agent
 * removes the address when the grant lapses, and the kernel's address lifetime backs it
 * up, but both can be late: a killed agent removes nothing, and the kernel counts
 * lifetimes in whole seconds. The grant's expiry here is exact, so this node stops
 * answering for the IP before the controller can grant it to another (it waits for the
 * lease and a grace to pass). While the grant is valid, the claim is made with the IP's
 * virtual MAC, in the ARP header and as the frame's source, so that the switch learns
 * which port holds the IP.
 */
static __always_inline int egw_arp_out(struct __sk_buff *skb)
{
	struct {
		__be16 htype, ptype;
		__u8 hlen, plen;
		__be16 op;
		__u8 sha[ETH_ALEN];
		__be32 sip;
	} __attribute__((packed)) arp;
	struct egw_grant *grant;
	__u8 vmac[ETH_ALEN];

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &arp, sizeof(arp)) < 0)
		return TCX_NEXT;
	if (arp.ptype != bpf_htons(ETH_P_IP) || arp.hlen != ETH_ALEN || arp.plen != 4)
		return TCX_NEXT;
	grant = bpf_map_lookup_elem(&egw_grants, &arp.sip);
	if (!grant)
		return TCX_NEXT;
	if (grant->expires_ns <= bpf_ktime_get_ns())
		return egw_count(skb, EGW_STAT_ARP_LAPSED_GRANT, TCX_DROP);
	egw_vmac(vmac, arp.sip);
	/* The stores cannot fail on the bytes just read; were one to, the claim would
	 * leave with the interface's MAC, which still reaches this node. */
	bpf_skb_store_bytes(skb, ETH_ALEN, vmac, ETH_ALEN, 0);
	bpf_skb_store_bytes(skb, ETH_HLEN + 8, vmac, ETH_ALEN, 0);
	return egw_count(skb, EGW_STAT_ARP_VIRTUAL_MAC, TCX_NEXT);
}

/*
 * A packet marked for SNAT (steered here, or from a local pod) leaving an uplink: it
 * leaves only with the egress IP its mark names as its source. The nft table's guard
 * says the same, but a firewall reload or `nft flush ruleset` takes the table, its SNAT
 * rule and its guard away at once, until the agent's next read-back repairs them; meanwhile
 * the packet would leave with the pod's IP. This guard is in BPF, which no nft command
 * touches.
 */
static __always_inline int egw_snat_guard(struct __sk_buff *skb)
{
	struct egw_grant *grant;
	__be32 saddr, daddr;
	__u32 id;

	id = (skb->mark >> EGW_MARK_ID_SHIFT) & EGW_MARK_ID_MAX;
	if (egw_ipv4_addrs(skb, &saddr, &daddr) < 0)
		return egw_count(skb, EGW_STAT_UPLINK_OUT_NOT_SNATED, TCX_DROP);
	grant = bpf_map_lookup_elem(&egw_grants, &saddr);
	if (!grant || grant->snat_id != id)
		return egw_count(skb, EGW_STAT_UPLINK_OUT_NOT_SNATED, TCX_DROP);
	return TCX_NEXT;
}

/*
 * A packet from a local pod (one in egw_pods) leaving an uplink without any mark of ours
 * never went through egw_from_pod: a program on the pod's interface ahead of ours sent it
 * past the node's routing (a CNI that redirects in BPF). If the pod's policies steer (or
 * drop) its destination, it would leave with a source other than its egress IP: drop it.
 * Anything else (in-cluster, unselected, already masqueraded to the node's IP) passes.
 */
static __always_inline int egw_bypass_guard(struct __sk_buff *skb)
{
	struct egw_dst_key key = { .prefixlen = 32 };
	struct egw_route *route;
	__be32 saddr;
	__u32 *set;

	if (egw_ipv4_addrs(skb, &saddr, &key.dst) < 0)
		return TCX_NEXT;
	set = bpf_map_lookup_elem(&egw_pods, &saddr);
	if (!set)
		return TCX_NEXT;
	route = egw_set_route(*set, &key);
	if (!route || route->verdict == EGW_VERDICT_IN_CLUSTER)
		return TCX_NEXT;
	return egw_count(skb, EGW_STAT_UPLINK_OUT_BYPASSED, TCX_DROP);
}

/*
 * tcx egress on every interface that can hold floating IPs (the uplinks): steered
 * packets get their egress IP's virtual MAC (or are wrapped, the routed way), packets
 * marked for SNAT leave only SNATed, selected packets that bypassed egw_from_pod do not
 * leave, and ARP claims for floating IPs are guarded. Everything else passes untouched.
 */
SEC("tcx/egress")
int egw_uplink_out(struct __sk_buff *skb)
{
	if (skb->protocol == bpf_htons(ETH_P_ARP))
		return egw_arp_out(skb);
	if (skb->protocol != bpf_htons(ETH_P_IP))
		return TCX_NEXT;
	switch (skb->mark & EGW_MARK_CLASS) {
	case EGW_MARK_STEER:
		return egw_steer_out(skb);
	case EGW_MARK_ROUTE:
		return egw_route_out(skb);
	case EGW_MARK_SNAT:
		return egw_snat_guard(skb);
	case 0:
		return egw_bypass_guard(skb);
	}
	return TCX_NEXT;
}

/*
 * A steered packet for egress_ip, whose grant is grant: SNAT it to the IP, only while
 * this node's grant for the IP is valid, so that two nodes never SNAT to one IP, and only
 * from a pod CIDR to one of the IP's policy destinations (egw_pod_cidrs, egw_snat_dsts),
 * so that no other host leaves as the egress IP.
 */
static __always_inline int egw_snat_in(struct __sk_buff *skb, __be32 egress_ip, struct egw_grant *grant)
{
	struct egw_snat_dst_key dst_key = { .prefixlen = 64 };
	struct egw_dst_key src_key = { .prefixlen = 32 };
	__be32 saddr, daddr;

	if (!egw_grant_valid(grant))
		return egw_count(skb, EGW_STAT_UPLINK_IN_EXPIRED, TCX_DROP);
	if (egw_ipv4_addrs(skb, &saddr, &daddr) < 0)
		return egw_count(skb, EGW_STAT_UPLINK_IN_MALFORMED, TCX_DROP);
	src_key.dst = saddr;
	if (!bpf_map_lookup_elem(&egw_pod_cidrs, &src_key))
		return egw_count(skb, EGW_STAT_UPLINK_IN_NOT_POD, TCX_DROP);
	dst_key.egress_ip = egress_ip;
	dst_key.dst = daddr;
	if (!bpf_map_lookup_elem(&egw_snat_dsts, &dst_key))
		return egw_count(skb, EGW_STAT_UPLINK_IN_NOT_DESTINATION, TCX_DROP);

	egw_set_mark(skb, EGW_MARK_SNAT, grant->snat_id);
	bpf_skb_change_type(skb, PACKET_HOST);
	return egw_count(skb, EGW_STAT_UPLINK_IN_SNAT, TCX_NEXT);
}

/*
 * A routed packet (IPv4-in-IPv4 to egress_ip) from a node on another segment: take the
 * outer header off, then treat the packet as if steered here on the segment. Only from a
 * node's address (egw_nodes), and while the grant is valid.
 */
static __always_inline int egw_route_in(struct __sk_buff *skb, const struct iphdr *outer,
					__be32 egress_ip, struct egw_grant *grant)
{
	/* Nothing is taken apart for an IP this node may not SNAT to. */
	if (!egw_grant_valid(grant))
		return egw_count(skb, EGW_STAT_UPLINK_IN_EXPIRED, TCX_DROP);
	/* Ours carry no options and are never fragmented (they fit the path's MTU). */
	if (outer->ihl != EGW_ENCAP_LEN / 4 || (outer->frag_off & bpf_htons(IP_MF | IP_OFFSET)))
		return egw_count(skb, EGW_STAT_UPLINK_IN_MALFORMED, TCX_DROP);
	if (!bpf_map_lookup_elem(&egw_nodes, &outer->saddr))
		return egw_count(skb, EGW_STAT_UPLINK_IN_NOT_NODE, TCX_DROP);
	/* The segment size stays: it is the inner packets' own. */
	if (bpf_skb_adjust_room(skb, -EGW_ENCAP_LEN, BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_FIXED_GSO | EGW_ADJ_ROOM_DECAP_L3_IPV4) < 0)
		return egw_count(skb, EGW_STAT_UPLINK_IN_MALFORMED, TCX_DROP);
	egw_count(skb, EGW_STAT_UPLINK_IN_DECAP, TCX_NEXT);
	return egw_snat_in(skb, egress_ip, grant);
}

/*
 * tcx ingress on the uplinks. A frame addressed to the virtual MAC of a floating IP
 * this node holds is ours: the stack saw another host's MAC (PACKET_OTHERHOST) and would
 * drop it. Addressed to the floating IP itself, it is taken in as it is (a reply to a
 * SNATed flow, a ping), or, IPv4-in-IPv4, it was routed here from another segment and is
 * unwrapped. Addressed elsewhere, it was steered here from this segment. Either way
 * egw_snat_in decides.
 */
SEC("tcx/ingress")
int egw_uplink_in(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct egw_grant *grant;
	__be32 egress_ip;
	struct iphdr ip;
	__u8 *dst = data;

	/* Every frame the node receives comes by here: read the Ethernet header in place
	 * (tc has it in the linear area), not through a helper call. */
	if (data + ETH_HLEN > data_end)
		return TCX_NEXT;
	if (dst[0] != EGW_VMAC_0 || dst[1] != EGW_VMAC_1)
		return TCX_NEXT;
	__builtin_memcpy(&egress_ip, &dst[2], sizeof(egress_ip));
	grant = bpf_map_lookup_elem(&egw_grants, &egress_ip);
	/* Not held here (a switch floods a MAC it has not learnt): the stack drops it. */
	if (!grant)
		return egw_count(skb, EGW_STAT_UPLINK_IN_NOT_HELD, TCX_NEXT);

	if (skb->protocol == bpf_htons(ETH_P_ARP)) {
		bpf_skb_change_type(skb, PACKET_HOST);
		return TCX_NEXT;
	}
	if (skb->protocol != bpf_htons(ETH_P_IP))
		return TCX_NEXT;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) < 0)
		return egw_count(skb, EGW_STAT_UPLINK_IN_MALFORMED, TCX_DROP);
	if (ip.daddr == egress_ip) {
		if (ip.protocol == IPPROTO_IPIP)
			return egw_route_in(skb, &ip, egress_ip, grant);
		bpf_skb_change_type(skb, PACKET_HOST);
		return TCX_NEXT;
	}
	return egw_snat_in(skb, egress_ip, grant);
}

/* No GPL-only helper is used. */
char __license[] SEC("license") = "Apache-2.0";
