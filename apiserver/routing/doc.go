// Package routing decides how selected pod traffic leaves the cluster: which egress IP a
// policy uses and which node holds it. It is the one place that decides this; the
// controller (policy status), the node agent (dataplane tables) and the aggregated API
// (previews) all call it. It is pure: no I/O, no clock, no API calls.
package routing
