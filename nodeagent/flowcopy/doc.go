// Package flowcopy copies a gateway's SNAT conntrack entries to the standby of each egress
// IP it holds, so that established connections survive a failover: when the standby is
// granted the IP, the packets of those connections find their entries, in both directions,
// and keep their source port.
//
// A holder streams each change of an entry (from conntrack's events), and a full snapshot
// at the start of a stream and every so often, to each standby node over UDP, sealed with
// a key that the two agents' published heartbeat keys agree on (heartbeat.PairSession).
// The stream is in order and acknowledged (go-back-N); the acknowledgements measure how
// far behind the standby is. A standby keeps the entries in memory, and writes them into
// its own conntrack zone (Take, Install) when it is granted the IP.
//
// It must never take an entry for an IP its own node holds (the node's live entries are
// the truth for it), nor one from a node that its cache does not show holding the
// entry's IP.
package flowcopy
