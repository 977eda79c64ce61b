// Package placement decides which node holds each floating IP. A node can take an IP only if
// one of its subnets contains it; workers come before control-plane nodes; among those, the
// node holding the fewest floating IPs (across all gateways) wins, then the first by name.
// An IP stays where it is while its node can keep it, so restarts and new nodes move
// nothing; it moves only when its node goes Down, is cordoned, loses the subnet, or leaves.
// Each placed IP also gets a standby: the node it would move to if its holder went Down, by
// the same rules. A standby stays named while it can take the IP, and an IP that moves goes
// to its standby first.
//
// It is pure: no I/O, no clocks, no API calls, no logging, no goroutines. Everything it
// knows comes in through Input, and the same Input gives the same Result whatever the order
// of its slices. It never fails as a whole: an IP it cannot place, or that two gateways
// list, is reported with the reason, and every other IP is still placed.
package placement
