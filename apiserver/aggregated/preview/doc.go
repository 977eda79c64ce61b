// Package preview answers "which way would this packet go?" without sending it: the
// source pod's egress NetworkPolicy verdict (package netpolicy), then the egress decision
// of package routing (Policies.Decide, over the same route tables the node agent programs
// into the dataplane), then the gateway and the reply's way back.
//
// It never decides anything about egress itself: a second implementation of the decision
// would drift from the dataplane, and the preview would lie. It is pure: its Input is a
// snapshot the caller builds from its caches.
package preview
