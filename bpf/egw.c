//go:build ignore

/*
 * Copyright The egressgw Authors.
 * SPDX-License-Identifier: Apache-2.0
 *
 * The egressgw dataplane: classify packets leaving local pods, carry steered ones to
 * the node holding their egress IP, and let that node SNAT them only while its grant
 * is valid. docs/dataplane.md walks a packet through all three programs.
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
 * tcx ingress on the host side of each local pod's veth: packets from the pod.
 *
 * Marks only. The packet then goes through the node's FORWARD chain, where the CNI
 * enforces network policy, before routing by mark takes a steered packet to egw0.
 */
SEC("tcx/ingress")
int egw_from_pod(struct __sk_buff *skb)
{
	struct egw_dst_key key = { .prefixlen = 32 };
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
		/* This node holds the egress IP: SNAT here, without the tunnel, which would
		 * hand the frame back to the device that sent it. */
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
 * tcx egress on egw0 (ipip, external mode): the outer destination is the egress IP
 * itself, so the node holding it answers ARP for it and decapsulates.
 */
SEC("tcx/egress")
int egw_tunnel_out(struct __sk_buff *skb)
{
	struct bpf_tunnel_key key = {};
	__be32 *egress_ip;
	__u32 id;

	/* Only steered packets belong on egw0. */
	if ((skb->mark & EGW_MARK_CLASS) != EGW_MARK_STEER)
		return egw_count(skb, EGW_STAT_TUNNEL_OUT_NOT_MARKED, TCX_DROP);

	id = (skb->mark >> EGW_MARK_ID_SHIFT) & EGW_MARK_ID_MAX;
	egress_ip = bpf_map_lookup_elem(&egw_egress, &id);
	if (!egress_ip)
		return egw_count(skb, EGW_STAT_TUNNEL_OUT_NO_EGRESS_IP, TCX_DROP);

	key.remote_ipv4 = bpf_ntohl(*egress_ip);
	key.tunnel_ttl = 64;
	if (bpf_skb_set_tunnel_key(skb, &key, sizeof(key), 0) < 0)
		return egw_count(skb, EGW_STAT_TUNNEL_OUT_KEY_FAILED, TCX_DROP);

	/* The outer packet inherits the mark: left set, it would be routed into egw0 again. */
	egw_write_mark(skb, skb->mark & EGW_MARK_KEEP);
	return egw_count(skb, EGW_STAT_TUNNEL_OUT_ENCAP, TCX_NEXT);
}

/*
 * tcx ingress on egw0, after decapsulation on the node holding the egress IP. The
 * outer destination names the egress IP; SNAT to it only while this node's grant for
 * it is valid, so that two nodes never SNAT to one IP.
 */
SEC("tcx/ingress")
int egw_tunnel_in(struct __sk_buff *skb)
{
	struct bpf_tunnel_key key = {};
	struct egw_grant *grant;
	__be32 egress_ip;

	if (bpf_skb_get_tunnel_key(skb, &key, sizeof(key), 0) < 0)
		return egw_count(skb, EGW_STAT_TUNNEL_IN_NO_TUNNEL_KEY, TCX_DROP);

	egress_ip = bpf_htonl(key.local_ipv4);
	grant = bpf_map_lookup_elem(&egw_grants, &egress_ip);
	if (!grant || !egw_valid_id(grant->snat_id))
		return egw_count(skb, EGW_STAT_TUNNEL_IN_NO_GRANT, TCX_DROP);
	if (grant->expires_ns <= bpf_ktime_get_ns())
		return egw_count(skb, EGW_STAT_TUNNEL_IN_EXPIRED, TCX_DROP);

	egw_set_mark(skb, EGW_MARK_SNAT, grant->snat_id);
	/* Every node's tunnel device has its own MAC (VXLAN drops frames from its own
	 * address as loops) and does no ARP, so the inner frame is addressed to the
	 * sender's device: take it as ours, or IP would not forward it. */
	bpf_skb_change_type(skb, PACKET_HOST);
	return egw_count(skb, EGW_STAT_TUNNEL_IN_SNAT, TCX_NEXT);
}

/*
 * tcx egress on every interface that can hold floating IPs: no ARP packet leaves that
 * claims a floating IP whose grant has lapsed. The agent removes the address when the
 * grant lapses, and the kernel's address lifetime backs it up, but both can be late: a
 * killed agent removes nothing, and the kernel counts lifetimes in whole seconds. The
 * grant's expiry here is exact, so this node stops answering for the IP before the
 * controller can grant it to another (it waits for the lease and a grace to pass).
 */
SEC("tcx/egress")
int egw_arp_guard(struct __sk_buff *skb)
{
	struct {
		__be16 htype, ptype;
		__u8 hlen, plen;
		__be16 op;
		__u8 sha[ETH_ALEN];
		__be32 sip;
	} __attribute__((packed)) arp;
	struct egw_grant *grant;

	if (skb->protocol != bpf_htons(ETH_P_ARP))
		return TCX_NEXT;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &arp, sizeof(arp)) < 0)
		return TCX_NEXT;
	if (arp.ptype != bpf_htons(ETH_P_IP) || arp.hlen != ETH_ALEN || arp.plen != 4)
		return TCX_NEXT;
	grant = bpf_map_lookup_elem(&egw_grants, &arp.sip);
	if (grant && grant->expires_ns <= bpf_ktime_get_ns())
		return egw_count(skb, EGW_STAT_ARP_LAPSED_GRANT, TCX_DROP);
	return TCX_NEXT;
}

/* No GPL-only helper is used. */
char __license[] SEC("license") = "Apache-2.0";
