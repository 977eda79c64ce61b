/*
 * Copyright The egressgw Authors.
 * SPDX-License-Identifier: Apache-2.0
 *
 * The maps and helpers shared by the egressgw programs (egw.c), and the layout the
 * Go loader (types.go) mirrors. docs/dataplane.md describes the design.
 */
#ifndef __EGW_H
#define __EGW_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* bpf_skb_adjust_room's flag of 6.3 and later (Debian 12's headers predate it): the
 * outer IPv4 header goes, and with it the GSO type it gave the packet. */
#define EGW_ADJ_ROOM_DECAP_L3_IPV4	(1ULL << 7)

/*
 * Routed egress: a steered packet from a node on none of its egress IP's subnets crosses
 * the routed node network in IPv4-in-IPv4 (RFC 2003), from the node's address to the
 * egress IP itself, so that the network delivers it to whichever node holds the IP.
 */
#define EGW_ENCAP_LEN		20	/* the outer IPv4 header, without options */
#define IP_DF			0x4000	/* iphdr.frag_off's flags and offset (net/ip.h) */
#define IP_MF			0x2000
#define IP_OFFSET		0x1FFF
#define EGW_ENCAP_TTL		64

/* tcx verdicts (linux/bpf.h of 6.6 and later; Debian 12's headers predate them). */
#ifndef TCX_NEXT
#define TCX_NEXT	TC_ACT_UNSPEC	/* -1: let the next program, then the stack, decide */
#define TCX_PASS	TC_ACT_OK
#define TCX_DROP	TC_ACT_SHOT
#endif

/*
 * skb->mark: the upper 16 bits are ours, the lower 16 are left to kube-proxy and others.
 * Bits 31..28 say what we did, bits 27..16 carry an egress or snat id.
 */
#define EGW_MARK_CLASS		0xF0000000U
#define EGW_MARK_CLASSIFIED	0xC0000000U	/* egw_from_pod looked, did not steer */
#define EGW_MARK_STEER		0xE0000000U	/* egw_from_pod: steer to egress id */
#define EGW_MARK_SNAT		0xD0000000U	/* egw_uplink_in: SNAT to snat id */
#define EGW_MARK_ROUTE		0xF0000000U	/* egw_from_pod: steer to egress id, routed */
#define EGW_MARK_KEEP		0x0000FFFFU
#define EGW_MARK_ID_SHIFT	16
#define EGW_MARK_ID_MAX		0xFFFU

/* What a set's routes trie says about a destination. The numbers are routing.Verdict's. */
enum egw_verdict {
	EGW_VERDICT_PASS	= 0,	/* no entry: leave as before (the node masquerades) */
	EGW_VERDICT_IN_CLUSTER	= 1,
	EGW_VERDICT_STEER	= 2,
	EGW_VERDICT_DROP	= 3,
};

/*
 * egw_stats indices: one per verdict path, so that `bpftool map dump name egw_stats`
 * explains what happened, grouped by program. The Go loader names them in the same order
 * (statNames; layout_test.go checks it).
 */
enum egw_stat_id {
	EGW_STAT_FROM_POD_NOT_IPV4,
	EGW_STAT_FROM_POD_MALFORMED,
	EGW_STAT_FROM_POD_UNKNOWN_POD_PASS,
	EGW_STAT_FROM_POD_PASS,
	EGW_STAT_FROM_POD_IN_CLUSTER,
	EGW_STAT_FROM_POD_STEER,
	EGW_STAT_FROM_POD_LOCAL_SNAT,
	EGW_STAT_FROM_POD_DROP_POLICY,
	EGW_STAT_FROM_POD_DROP_UNKNOWN_POD,
	EGW_STAT_FROM_POD_DROP_SPOOFED,
	EGW_STAT_FROM_POD_ROUTE,
	EGW_STAT_UPLINK_OUT_STEER,
	EGW_STAT_UPLINK_OUT_NO_EGRESS_IP,
	EGW_STAT_UPLINK_OUT_NO_UPLINK,
	EGW_STAT_UPLINK_OUT_NOT_SNATED,
	EGW_STAT_UPLINK_OUT_ENCAP,
	EGW_STAT_UPLINK_OUT_NO_ROUTE,
	EGW_STAT_UPLINK_OUT_BYPASSED,
	EGW_STAT_ARP_VIRTUAL_MAC,
	EGW_STAT_ARP_LAPSED_GRANT,
	EGW_STAT_UPLINK_IN_SNAT,
	EGW_STAT_UPLINK_IN_NOT_HELD,
	EGW_STAT_UPLINK_IN_EXPIRED,
	EGW_STAT_UPLINK_IN_MALFORMED,
	EGW_STAT_UPLINK_IN_NOT_POD,
	EGW_STAT_UPLINK_IN_NOT_DESTINATION,
	EGW_STAT_UPLINK_IN_DECAP,
	EGW_STAT_UPLINK_IN_NOT_NODE,
	EGW_STAT_MAX,
};

/*
 * The virtual MAC of a floating IP: 02:65 and the IP's four bytes (locally administered,
 * unicast). Whichever node holds the IP answers ARP for it with this MAC, and steered
 * frames are addressed to it, so the destination MAC names the egress IP. apiserver/routing
 * (VirtualMAC) computes the same.
 */
#define EGW_VMAC_0		0x02
#define EGW_VMAC_1		0x65

static __always_inline void egw_vmac(__u8 mac[ETH_ALEN], __be32 ip)
{
	mac[0] = EGW_VMAC_0;
	mac[1] = EGW_VMAC_1;
	__builtin_memcpy(&mac[2], &ip, sizeof(ip));
}

/* The set of pods the node does not know yet: its routes never steer. */
#define EGW_UNKNOWN_SET		0

/*
 * Key of a set's routes trie (egw_set_routes' inner maps), and of egw_pod_cidrs:
 * prefixlen is the prefix's length, 0 to 32.
 */
struct egw_dst_key {
	__u32 prefixlen;
	__be32 dst;
};

/*
 * Key of egw_snat_dsts: prefixlen is 32 plus the destination prefix's length, so that
 * the egress IP always matches whole and the destination by longest prefix.
 */
struct egw_snat_dst_key {
	__u32 prefixlen;
	__be32 egress_ip;
	__be32 dst;
};

struct egw_route {
	__u32 verdict;		/* enum egw_verdict */
	__u32 egress_id;	/* egw_egress key when verdict is STEER */
	__u32 policy_id;	/* reserved for per-policy counters; 0 for now */
};

struct egw_grant {
	__u32 snat_id;
	__u32 pad;
	__u64 expires_ns;	/* CLOCK_MONOTONIC, as bpf_ktime_get_ns reads it */
};

/* Key of egw_pod_sources: a source address a pod may use, on its host-side veth. */
struct egw_pod_source {
	__u32 ifindex;		/* the host-side veth, as skb->ifindex reads it on its ingress */
	__be32 saddr;		/* one of the pod's IPv4 status.podIPs */
};

struct egw_uplink {
	__u32 ifindex;		/* the interface whose subnet holds the egress IP */
	__u8 mac[ETH_ALEN];	/* its MAC */
	__u16 pad;
};

/* How a node on none of an egress IP's subnets reaches it: the kernel's route to it. */
struct egw_routed {
	__u32 ifindex;		/* the interface the node's route to the egress IP leaves by */
	__be32 saddr;		/* the source address the kernel picks for it */
};

struct egw_stat {
	__u64 packets;
	__u64 bytes;
};

/* Pinned by name in the agent's bpffs directory, so that a restart keeps them. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __be32);		/* pod IPv4 */
	__type(value, __u32);		/* set id */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} egw_pods SEC(".maps");

/*
 * The sources each pod's veth may send from: the attacher writes them before it puts
 * egw_from_pod on the veth, and egw_from_pod drops any other, so that no pod classifies
 * as another (pods have CAP_NET_RAW by default).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct egw_pod_source);
	__type(value, __u8);		/* unused: presence is the answer */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} egw_pod_sources SEC(".maps");

/*
 * One routes trie per set of policies, so that a lookup walks only the set's own
 * prefixes, however many sets the node has, and the agent replaces a set's routes in
 * one atomic write of its slot.
 */
struct egw_routes_trie {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	/* Sizes, not types: clang emits only a forward declaration for types that an inner
	 * map alone refers to. layout_test.go checks them against the Go mirrors. */
	__uint(key_size, sizeof(struct egw_dst_key));
	__uint(value_size, sizeof(struct egw_route));
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 65536);
	__type(key, __u32);		/* set id */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct egw_routes_trie);
} egw_set_routes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);		/* egress id */
	__type(value, __be32);		/* egress IPv4 */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} egw_egress SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __be32);		/* egress IPv4 this node holds */
	__type(value, struct egw_grant);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} egw_grants SEC(".maps");

/* Which uplink reaches each egress IP on its own subnet: the agent writes one entry per
 * floating IP of every gateway that lies on a subnet of this node. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __be32);		/* egress IPv4 */
	__type(value, struct egw_uplink);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} egw_uplinks SEC(".maps");

/* Which egress IPs this node reaches only through routers, and how: the agent writes one
 * entry per floating IP of every gateway on none of its subnets that it has a route to. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __be32);		/* egress IPv4 */
	__type(value, struct egw_routed);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} egw_routed SEC(".maps");

/*
 * What a gateway SNATs for a steered frame: only a source in the cluster's pod CIDRs
 * (every Node's), to a destination of a policy that routes to the frame's egress IP.
 * Any host on the node segment can address a frame to a virtual MAC; without these, the
 * gateway would relay its traffic as the egress IP. A full trie refuses the rest, whose
 * frames drop (bpf/snatfilter.go).
 */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct egw_dst_key);	/* a pod CIDR */
	__type(value, __u32);			/* 1 */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} egw_pod_cidrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct egw_snat_dst_key);	/* egress IP, policy destination */
	__type(value, __u32);			/* 1 */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} egw_snat_dsts SEC(".maps");

/*
 * The addresses of the cluster's nodes: the only outer sources a gateway takes routed
 * (IPv4-in-IPv4) packets from. Written by the agent from every Node's InternalIPs and the
 * interface addresses each agent reports.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __be32);		/* a node's IPv4 address */
	__type(value, __u8);		/* unused: presence is the answer */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} egw_nodes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EGW_STAT_MAX);
	__type(key, __u32);		/* enum egw_stat_id */
	__type(value, struct egw_stat);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} egw_stats SEC(".maps");

static __always_inline int egw_count(struct __sk_buff *skb, __u32 id, int verdict)
{
	struct egw_stat *stat;

	stat = bpf_map_lookup_elem(&egw_stats, &id);
	if (stat) {
		stat->packets++;
		stat->bytes += skb->len;
	}
	return verdict;
}

/*
 * The verifier allows only 32-bit stores to skb->mark; without volatile, clang turns
 * a store that keeps the lower half into a 16-bit store of the upper half.
 */
static __always_inline void egw_write_mark(struct __sk_buff *skb, __u32 mark)
{
	*(volatile __u32 *)&skb->mark = mark;
}

static __always_inline void egw_set_mark(struct __sk_buff *skb, __u32 class, __u32 id)
{
	egw_write_mark(skb, (skb->mark & EGW_MARK_KEEP) | class |
		       ((id & EGW_MARK_ID_MAX) << EGW_MARK_ID_SHIFT));
}

/* A mark id travels in 12 bits; 0 is never handed out. */
static __always_inline int egw_valid_id(__u32 id)
{
	return id != 0 && id <= EGW_MARK_ID_MAX;
}

/* Folds bpf_csum_diff's 32-bit sum into an IPv4 header checksum. */
static __always_inline __sum16 egw_csum_fold(__s64 sum)
{
	__u32 s = (__u32)sum;

	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__sum16)~s;
}

/*
 * Reads the addresses of the IPv4 header behind the Ethernet header, pulling it into
 * the linear area if need be. Returns 0, or -1 if the packet is too short.
 */
static __always_inline int egw_ipv4_addrs(struct __sk_buff *skb, __be32 *saddr, __be32 *daddr)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + ETH_HLEN;

	if ((void *)(ip + 1) > data_end) {
		if (bpf_skb_pull_data(skb, ETH_HLEN + sizeof(*ip)) < 0)
			return -1;
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
		ip = data + ETH_HLEN;
		if ((void *)(ip + 1) > data_end)
			return -1;
	}
	*saddr = ip->saddr;
	*daddr = ip->daddr;
	return 0;
}

#endif /* __EGW_H */
