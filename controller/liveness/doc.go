// Package liveness decides whether a node is Up or Down from its agent's heartbeat: a
// Lease the agent renews. It compares nothing across machines: it notes, on its own
// monotonic clock, when it last saw a renewal change, so a clock jump on either side
// cannot make a node look alive or dead. It must never declare a node Down sooner than
// the lease duration plus a grace after the last renewal it saw.
package liveness
