// Package peer is the little protocol the demo's and the tests' traffic speaks: the
// external host's TCP and UDP servers tell every client the source address they saw, and
// the pods' clients ask. The network-namespace topology serves it in-process; the
// egressgw-testclient image (cmd/egressgw-testclient) serves and asks it in a real cluster.
//
// TCP: the client's first line picks a mode. "WHO" answers the source and closes;
// "ECHO" answers the source, then echoes lines until the client closes; "SINK" reads to
// EOF and answers the source and the byte count; "SOURCE n" sends n bytes. UDP: every
// datagram is answered with "<source> <payload>".
//
// It never decides anything about egress: it only reports what arrived.
package peer
