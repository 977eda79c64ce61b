package nodeagent

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	hb "github.com/egressgw/egressgw/apiserver/heartbeat"
	"github.com/egressgw/egressgw/apiserver/routing"
	"github.com/egressgw/egressgw/nodeagent/flowcopy"
)

// standbys keep established connections alive across a failover (package flowcopy): as
// a holder, the node streams its SNAT conntrack entries of each IP it holds to that IP's
// standby (the gateway's status.standbys); as a standby, it keeps the holders' entries in
// memory, and writes them into its conntrack zone when it is granted their IP. Both ends
// authenticate with the agents' heartbeat keys.
//
// A pass tells it, in order: the IPs about to be held (whose copies it stops taking,
// before the grant makes them live), the IPs let go (whose last changes go to their
// standby before the node reports that it let go, so a planned move hands the state
// over), and what it holds after the pass, with each IP's standby.
type standbys struct {
	node   string
	port   uint16
	sender *flowcopy.Sender
	recv   *flowcopy.Receiver
	ct     *flowcopy.Conntrack
	keys   *beatKeys
	// view is what the receiver checks records against, from the last pass.
	view atomic.Pointer[standbyView]
	// handover bounds the wait for a standby's acknowledgement when an IP is let go.
	handover time.Duration
	m        *flowcopy.Metrics

	// reported is what the report says of each copy, by IP; reportedAt when its
	// figures (entries, lag) were last refreshed. Only the loop goroutine uses them.
	reported   map[string]v1.StandbyCopy
	reportedAt time.Time
}

// copyRefresh is how often the report's figures of an unchanged copy are refreshed: a
// state change is reported at once, but entries and lag alone would write the report on
// every pass.
const copyRefresh = 30 * time.Second

type standbyView struct {
	// holders: each placed IP's node; holding: the IPs this node holds or is about to.
	holders map[netip.Addr]string
	holding map[netip.Addr]bool
	// keys: each node's published heartbeat keys.
	keys map[string][]hb.PublicKey
}

// peer is another node as the copy needs it.
type peer struct {
	internalIPs []netip.Addr
	keys        []string
}

func newStandbys(opts Options, ct *flowcopy.Conntrack, keys *beatKeys, m *flowcopy.Metrics) *standbys {
	s := &standbys{node: opts.NodeName, port: opts.FlowCopy.Port, ct: ct, keys: keys, handover: opts.FlowCopy.Handover}
	s.view.Store(&standbyView{})
	s.sender = flowcopy.NewSender(opts.NodeName, keys.sealing, ct, flowcopy.SenderOptions{}, m)
	s.m = m
	s.recv = flowcopy.NewReceiver(flowcopy.ReceiverOptions{
		Node: opts.NodeName, Keys: keys.pairs,
		PeerKeys: func(node string) []hb.PublicKey { return s.view.Load().keys[node] },
		Accept: func(ip netip.Addr, node string) bool {
			v := s.view.Load()
			return v.holders[ip] == node && !v.holding[ip]
		},
		MaxCopies: opts.FlowCopy.MaxEntries,
	}, m)
	return s
}

// run serves copies and sends them until ctx ends.
func (s *standbys) run(ctx context.Context) error {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{Port: int(s.port)})
	if err != nil {
		return fmt.Errorf("listening for conntrack copies on --flow-copy-port %d: %w", s.port, err)
	}
	go func() {
		if err := s.recv.Serve(ctx, conn); err != nil {
			klog.ErrorS(err, "Serving conntrack copies", "node", s.node)
		}
	}()
	go s.sender.Run(ctx)
	go func() {
		for ctx.Err() == nil {
			err := s.ct.Watch(ctx, s.sender.Wants, s.sender.Note, s.sender.Lost)
			if err != nil {
				klog.ErrorS(err, "Reading conntrack's events; the standbys get a snapshot", "node", s.node)
				s.sender.Lost()
				time.Sleep(time.Second)
			}
		}
	}()
	return nil
}

// willHold stops taking copies of ips, which this node is about to hold, and writes the
// copies of those it does not hold yet into its conntrack zone: the connections of a
// holder that failed, or handed them over, find their entries from the first packet.
func (s *standbys) willHold(ips, held []netip.Addr) {
	if s == nil {
		return
	}
	s.holding(ips)
	now := time.Now()
	for _, ip := range ips {
		if slices.Contains(held, ip) {
			continue
		}
		entries := s.recv.Take(ip, now)
		if len(entries) == 0 {
			continue
		}
		failed, err := flowcopy.Install(s.ct, entries)
		s.m.Installed(len(entries)-failed, failed)
		if err != nil {
			klog.ErrorS(err, "Writing a failed holder's connections into conntrack; those left out are reset", "node", s.node, "ip", ip, "failed", failed, "of", len(entries))
		}
		klog.InfoS("Took over the connections of a floating IP", "node", s.node, "ip", ip, "entries", len(entries)-failed, "took", time.Since(now))
	}
}

// holding stops taking copies of ips.
func (s *standbys) holding(ips []netip.Addr) {
	v := *s.view.Load()
	v.holding = maps.Clone(v.holding)
	if v.holding == nil {
		v.holding = map[netip.Addr]bool{}
	}
	for _, ip := range ips {
		v.holding[ip] = true
	}
	s.view.Store(&v)
}

// letGo hands the last changes of the IPs the node let go to their standbys.
func (s *standbys) letGo(ips []netip.Addr) {
	if s == nil || len(ips) == 0 {
		return
	}
	start := time.Now()
	// The events of the last changes may still be on their way from the kernel: the
	// sender takes them before it hands over.
	drained := s.ct.Drain(s.handover / 2)
	ok := s.sender.Handover(ips, s.handover-time.Since(start))
	klog.V(2).InfoS("Handed the conntrack entries over to the standbys", "node", s.node, "ips", ips, "drained", drained, "acknowledged", ok, "took", time.Since(start))
}

// route sets what the node holds after a pass, and each IP's standby.
func (s *standbys) route(gateways []routing.Gateway, peers map[string]peer, held []netip.Addr) {
	if s == nil {
		return
	}
	v := &standbyView{holders: map[netip.Addr]string{}, holding: map[netip.Addr]bool{}, keys: map[string][]hb.PublicKey{}}
	for name, p := range peers {
		for _, k := range p.keys {
			if pk, err := hb.ParsePublicKey(k); err == nil {
				v.keys[name] = append(v.keys[name], pk)
			}
		}
	}
	routes := map[netip.Addr]flowcopy.Peer{}
	for _, g := range gateways {
		for ipS, node := range g.Placed {
			ip, err := netip.ParseAddr(ipS)
			if err != nil {
				continue
			}
			v.holders[ip] = node
			standby := g.Standbys[ipS]
			if !slices.Contains(held, ip) || standby == "" || standby == s.node {
				continue
			}
			p := peers[standby]
			if len(p.internalIPs) == 0 || len(v.keys[standby]) == 0 {
				continue
			}
			routes[ip] = flowcopy.Peer{Node: standby, Addr: netip.AddrPortFrom(p.internalIPs[0], s.port), Key: v.keys[standby][0]}
		}
	}
	for _, ip := range held {
		v.holding[ip] = true
	}
	s.view.Store(v)
	s.sender.Route(routes)
}

// copies are what the report says of each copy now, and whether that differs from what
// it said: a state or a standby changed, or the figures are due for a refresh.
func (s *standbys) copies(now time.Time) ([]v1.StandbyCopy, bool) {
	if s == nil {
		return nil, false
	}
	next, changed, refresh := s.next(now)
	if refresh {
		s.reportedAt = now
	}
	s.reported = next
	out := slices.Collect(maps.Values(next))
	slices.SortFunc(out, func(a, b v1.StandbyCopy) int { return strings.Compare(a.IP, b.IP) })
	return out, changed
}

// next is what the report would say of each copy now, by IP, and whether that differs
// from what it says; refresh: the figures were due for a refresh.
func (s *standbys) next(now time.Time) (next map[string]v1.StandbyCopy, changed, refresh bool) {
	refresh = now.Sub(s.reportedAt) >= copyRefresh
	next = map[string]v1.StandbyCopy{}
	for _, st := range s.sender.Status() {
		c := v1.StandbyCopy{IP: st.IP.String(), Standby: st.Standby, State: copyState(st, now),
			Entries: int32(st.Copies), LagMilliseconds: int32(st.Lag.Milliseconds()), LastTransitionTime: metav1.NewTime(now)}
		was, ok := s.reported[c.IP]
		switch {
		case !ok || was.Standby != c.Standby || was.State != c.State:
			changed = true
		case !refresh && !moved(was.Entries, c.Entries):
			c.Entries, c.LagMilliseconds, c.LastTransitionTime = was.Entries, was.LagMilliseconds, was.LastTransitionTime
		default:
			c.LastTransitionTime = was.LastTransitionTime
			changed = changed || c.Entries != was.Entries || c.LagMilliseconds != was.LagMilliseconds
		}
		next[c.IP] = c
	}
	return next, changed || len(next) != len(s.reported), refresh
}

// moved: the count of entries changed by more than a tenth, which the report shows at
// once.
func moved(was, now int32) bool {
	d := int64(now) - int64(was)
	return d*d*100 > int64(max(was, now))*int64(max(was, now))
}

// copiesChanged says whether the report's copies are out of date: a pass would write them.
func (s *standbys) copiesChanged(now time.Time) bool {
	if s == nil {
		return false
	}
	_, changed, _ := s.next(now)
	return changed
}

// copyState names a copy's state for the report.
func copyState(st flowcopy.CopyStatus, now time.Time) string {
	switch {
	case st.AckedAt.IsZero() || now.Sub(st.AckedAt) > time.Second:
		return v1.CopyNoAnswer
	case st.InSync:
		return v1.CopyInSync
	}
	return v1.CopyBehind
}
