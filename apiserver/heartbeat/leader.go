package heartbeat

import (
	"fmt"
	"net/netip"
	"strings"
)

// Leader is where the controller's leader takes heartbeats, and the key it answers with.
// Both are in its leader election Lease's holder identity, which only the controller may
// write: "<replica>@<ip:port>#<key>".
type Leader struct {
	Addr netip.AddrPort
	Key  PublicKey
}

// LeaderIdentity is the holder identity of a replica that takes heartbeats at addr and
// answers with key.
func LeaderIdentity(replica string, addr netip.AddrPort, key PublicKey) string {
	return replica + "@" + addr.String() + "#" + key.String()
}

// ParseLeaderIdentity reads a holder identity that LeaderIdentity wrote.
func ParseLeaderIdentity(id string) (Leader, error) {
	at := strings.LastIndexByte(id, '@')
	addr, key, ok := strings.Cut(id[at+1:], "#")
	if at < 0 || !ok {
		return Leader{}, fmt.Errorf("leader identity %q does not name a heartbeat address and key (<replica>@<ip:port>#<key>)", id)
	}
	var l Leader
	var err error
	if l.Addr, err = netip.ParseAddrPort(addr); err != nil {
		return Leader{}, fmt.Errorf("leader identity %q: %w", id, err)
	}
	if l.Key, err = ParsePublicKey(key); err != nil {
		return Leader{}, fmt.Errorf("leader identity %q: %w", id, err)
	}
	return l, nil
}
