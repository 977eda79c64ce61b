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

/*
 * egw_local_grant reports whether this node holds a valid grant for the egress IP of
 * egress id, and its SNAT id.
 */
static __always_inline int egw_local_grant(__u32 egress_id, __u32 *snat_id)
{
	struct egw_grant *grant;
	__be32 *egress_ip;

	egress_ip = bpf_map_lookup_elem(&egw_egress, &egress_id);
	if (!egress_ip)
		return 0;
	grant = bpf_map_lookup_elem(&egw_grants, egress_ip);
	if (!grant || !egw_valid_id(grant->snat_id) || grant->expires_ns <= bpf_ktime_get_ns())
		return 0;
	*snat_id = grant->snat_id;
	return 1;
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
	struct egw_route *route = NULL;
	__u32 *set, set_id, snat_id;
	void *routes;
	__be32 saddr;
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

	/* A set without routes has no trie: everything passes, as with an empty one. */
	routes = bpf_map_lookup_elem(&egw_set_routes, &set_id);
	if (routes)
		route = bpf_map_lookup_elem(routes, &key);
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
		/* This node holds the egress IP: SNAT here. Sent to its own virtual MAC, the
		 * frame would never come back: a switch does not send a frame out of the
		 * port it came in by. */
		if (egw_local_grant(route->egress_id, &snat_id)) {
			egw_set_mark(skb, EGW_MARK_SNAT, snat_id);
			return egw_count(skb, EGW_STAT_FROM_POD_LOCAL_SNAT, TCX_NEXT);
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
 * tcx egress on every interface that can hold floating IPs (the uplinks): steered
 * packets get their egress IP's virtual MAC, packets marked for SNAT leave only SNATed,
 * and ARP claims for floating IPs are guarded. Everything else passes untouched.
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
	case EGW_MARK_SNAT:
		return egw_snat_guard(skb);
	}
	return TCX_NEXT;
}

/*
 * tcx ingress on the uplinks. A frame addressed to the virtual MAC of a floating IP
 * this node holds is ours: the stack saw another host's MAC (PACKET_OTHERHOST) and would
 * drop it. Addressed to the floating IP itself (a reply to a SNATed flow, a ping), it is
 * taken in as it is. Addressed elsewhere, it was steered here: SNAT it to the IP, only
 * while this node's grant for the IP is valid, so that two nodes never SNAT to one IP,
 * and only from a pod CIDR to one of the IP's policy destinations (egw_pod_cidrs,
 * egw_snat_dsts), so that no other host on the segment leaves as the egress IP.
 */
SEC("tcx/ingress")
int egw_uplink_in(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct egw_snat_dst_key dst_key = { .prefixlen = 64 };
	struct egw_dst_key src_key = { .prefixlen = 32 };
	__be32 egress_ip, saddr, daddr;
	struct egw_grant *grant;
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
	if (egw_ipv4_addrs(skb, &saddr, &daddr) < 0)
		return egw_count(skb, EGW_STAT_UPLINK_IN_MALFORMED, TCX_DROP);
	if (daddr == egress_ip) {
		bpf_skb_change_type(skb, PACKET_HOST);
		return TCX_NEXT;
	}
	if (!egw_valid_id(grant->snat_id) || grant->expires_ns <= bpf_ktime_get_ns())
		return egw_count(skb, EGW_STAT_UPLINK_IN_EXPIRED, TCX_DROP);
	/* Any host on the segment can address a frame to the virtual MAC: SNAT only what a
	 * pod of the cluster sends to a destination that a policy routes to this IP. */
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

/* No GPL-only helper is used. */
char __license[] SEC("license") = "Apache-2.0";
