package topology

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/egressgw/egressgw/test/peer"
)

// ServicePort is where the external host's TCP and UDP servers listen.
const ServicePort = peer.Port

// External is the host beyond the router. Its servers tell every client the source
// address they saw (the protocol of package peer), and its sniffer records every IPv4
// packet that arrives, so a test can prove that no packet from a selected pod ever
// arrived with another source.
type External struct {
	NS string
	IP netip.Addr

	tcp   net.Listener
	udp   []net.PacketConn // one per address: an answer must come from the address asked
	sniff int              // AF_PACKET socket, -1 once closed
	wg    sync.WaitGroup

	mu      sync.Mutex
	packets []Packet
	dropped int // recorded, then dropped from the front of packets
	closed  bool
}

// Packet is one IPv4 packet as it arrived at the external host.
type Packet struct {
	At       time.Time
	Src, Dst netip.Addr
	Proto    uint8 // 1 ICMP, 6 TCP, 17 UDP
	SrcPort  uint16
	DstPort  uint16
	Len      int
	// Payload is the start of the TCP or UDP payload, for telling senders apart.
	Payload string
}

func (p Packet) String() string {
	return fmt.Sprintf("%s proto %d %s:%d → %s:%d len %d", p.At.Format("15:04:05.000"), p.Proto, p.Src, p.SrcPort, p.Dst, p.DstPort, p.Len)
}

// maxPackets and payloadPrefix bound the sniffer's memory. Past maxPackets, the oldest
// half of the record goes: a benchmark's bulk transfer must not stop the recording that
// later tests read (marks are positions in everything recorded, so they stay valid).
const (
	maxPackets    = 500_000
	payloadPrefix = 24
)

func startExternal(ns string) (_ *External, err error) {
	e := &External{NS: ns, IP: ExternalIP, sniff: -1}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	addr := fmt.Sprintf(":%d", ServicePort) // every address of the host
	if e.tcp, err = Listen(ns, "tcp4", addr); err != nil {
		return nil, err
	}
	for _, a := range []netip.Addr{ExternalIP, ExternalIP2} {
		pc, err := ListenPacket(ns, "udp4", netip.AddrPortFrom(a, ServicePort).String())
		if err != nil {
			return nil, err
		}
		e.udp = append(e.udp, pc)
	}
	if err := Do(ns, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_IP)))
		if err != nil {
			return fmt.Errorf("opening the sniffer: %w", err)
		}
		// A receive timeout lets close() stop the reader within a bounded time.
		tv := unix.Timeval{Usec: 200_000}
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			unix.Close(fd)
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("binding the sniffer: %w", err)
		}
		e.sniff = fd
		return nil
	}); err != nil {
		return nil, err
	}
	e.wg.Add(2 + len(e.udp))
	go e.serveTCP()
	for _, pc := range e.udp {
		go e.serveUDP(pc)
	}
	go e.sniffLoop(e.sniff)
	return e, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (e *External) close() {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	if e.tcp != nil {
		e.tcp.Close()
	}
	for _, pc := range e.udp {
		pc.Close()
	}
	e.wg.Wait()
}

func (e *External) isClosed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}

func (e *External) sniffLoop(fd int) {
	defer e.wg.Done()
	defer unix.Close(fd)
	buf := make([]byte, 65536)
	for !e.isClosed() {
		n, from, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if p, ok := parseIPv4(buf[:n]); ok {
			e.record(p, maxPackets)
		}
	}
}

// record appends p, first dropping the oldest half of the record if it holds limit.
func (e *External) record(p Packet, limit int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.packets) >= limit {
		half := len(e.packets) / 2
		e.packets = e.packets[:copy(e.packets, e.packets[half:])]
		e.dropped += half
	}
	e.packets = append(e.packets, p)
}

func parseIPv4(b []byte) (Packet, bool) {
	if len(b) < 20 || b[0]>>4 != 4 {
		return Packet{}, false
	}
	ihl := int(b[0]&0x0f) * 4
	p := Packet{At: time.Now(), Proto: b[9], Len: int(binary.BigEndian.Uint16(b[2:4]))}
	p.Src = netip.AddrFrom4([4]byte(b[12:16]))
	p.Dst = netip.AddrFrom4([4]byte(b[16:20]))
	if (p.Proto == 6 || p.Proto == 17) && len(b) >= ihl+4 {
		p.SrcPort = binary.BigEndian.Uint16(b[ihl:])
		p.DstPort = binary.BigEndian.Uint16(b[ihl+2:])
	}
	start := ihl + 8 // UDP
	if p.Proto == 6 && len(b) >= ihl+13 {
		start = ihl + int(b[ihl+12]>>4)*4
	}
	if p.Proto == 6 || p.Proto == 17 {
		if start < len(b) {
			p.Payload = string(b[start:min(len(b), start+payloadPrefix)])
		}
	}
	return p, true
}

// Packets returns the packets recorded so far (the last maxPackets at most) that match
// keep (all if keep is nil).
func (e *External) Packets(keep func(Packet) bool) []Packet {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Packet
	for _, p := range e.packets {
		if keep == nil || keep(p) {
			out = append(out, p)
		}
	}
	return out
}

// Mark returns a position in the record; PacketsSince reads from there.
func (e *External) Mark() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.dropped + len(e.packets)
}

// PacketsSince returns the packets recorded after mark that match keep.
func (e *External) PacketsSince(mark int, keep func(Packet) bool) []Packet {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Packet
	for _, p := range e.packets[min(max(mark-e.dropped, 0), len(e.packets)):] {
		if keep == nil || keep(p) {
			out = append(out, p)
		}
	}
	return out
}

func (e *External) serveTCP() {
	defer e.wg.Done()
	peer.ServeTCP(e.tcp, e.isClosed)
}

func (e *External) serveUDP(pc net.PacketConn) {
	defer e.wg.Done()
	peer.ServeUDP(pc)
}
