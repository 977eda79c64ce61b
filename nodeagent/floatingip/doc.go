// Package floatingip holds a node's floating IPs: it decides which interface carries each
// granted IPv4 address, adds it there as a /32 whose kernel lifetime backs up the grant if
// the agent dies, refreshes that lifetime while the grant lasts, removes it when the grant
// goes, and announces every acquisition with gratuitous ARP, the first right after the add,
// so that neighbours drop a stale entry in well under a second.
//
// It must never touch an address it did not add. Its addresses are marked in the kernel,
// not in a file, so a restarted agent (or a second Holder) recognises them with no state
// of its own: each is a /32 with the IFA label "<dev>:egw". Labels hold 15 characters, so
// for a device name longer than 11 the name is cut short before ":egw", which is what the
// kernel itself does to labels when it renames a device (and a rename keeps the suffix).
// An address is ours if and only if it is an IPv4 /32 whose label ends in ":egw"; every
// removal also names that label, so the kernel refuses to delete anything else.
package floatingip
