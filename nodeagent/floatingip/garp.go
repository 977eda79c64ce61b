package floatingip

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/mdlayher/arp"
	"k8s.io/klog/v2"

	"github.com/egressgw/egressgw/apiserver/routing"
)

var broadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// announcements are the gratuitous ARP packets that tell neighbours mac now has ip: a
// request (an RFC 5227 announcement: sender and target IP both ip, target MAC zero) and
// a reply (target MAC = sender MAC, which Linux needs before it takes a reply as
// gratuitous). Both go to the Ethernet broadcast address. Linux peers update an existing
// neighbour entry on either, whatever arp_accept says; other stacks heed one or the other.
func announcements(mac net.HardwareAddr, ip netip.Addr) ([]*arp.Packet, error) {
	req, err := arp.NewPacket(arp.OperationRequest, mac, ip, make(net.HardwareAddr, len(mac)), ip)
	if err != nil {
		return nil, err
	}
	reply, err := arp.NewPacket(arp.OperationReply, mac, ip, mac, ip)
	if err != nil {
		return nil, err
	}
	return []*arp.Packet{req, reply}, nil
}

// announce starts announcing o.ip on o.link, replacing any announcement of it under way.
// h.mu is held.
func (h *Holder) announce(o op) {
	if cancel, ok := h.bursts[o.ip]; ok {
		cancel()
	}
	if len(h.schedule) == 0 {
		delete(h.bursts, o.ip)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.bursts[o.ip] = cancel
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer cancel()
		h.burst(ctx, o.link, o.ip, time.Now())
	}()
}

// burst sends the announcements at the schedule's delays after added, until ctx ends
// (the IP was released). It logs once, at the end, never per packet.
func (h *Holder) burst(ctx context.Context, l link, ip netip.Addr, added time.Time) {
	// The IP's virtual MAC, not the interface's: it is what source nodes send steered
	// packets to, and the announcement's Ethernet source teaches the switch its port.
	pkts, err := announcements(routing.VirtualMAC(ip), ip)
	var conn arpConn
	if err == nil {
		conn, err = h.k.OpenARP(l)
	}
	if err != nil {
		h.failed.Add(uint64(len(h.schedule) * 2))
		klog.ErrorS(err, "Cannot announce floating IP with gratuitous ARP; neighbours keep a stale entry until it times out", "ip", ip, "interface", l.Name)
		return
	}
	defer conn.Close()
	if err := h.send(ctx, conn, pkts, added); err != nil {
		klog.ErrorS(err, "Some gratuitous ARP announcements failed", "ip", ip, "interface", l.Name)
		return
	}
	klog.V(2).InfoS("Announced floating IP", "ip", ip, "interface", l.Name, "cancelled", ctx.Err() != nil)
}

func (h *Holder) send(ctx context.Context, conn arpConn, pkts []*arp.Packet, added time.Time) error {
	var errs []error
	for _, d := range h.schedule {
		if wait := time.Until(added.Add(d)); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
			}
		}
		if ctx.Err() != nil {
			break
		}
		for _, p := range pkts {
			if err := conn.WriteTo(p, broadcast); err != nil {
				h.failed.Add(1)
				errs = append(errs, err)
				continue
			}
			h.sent.Add(1)
		}
	}
	return errors.Join(errs...)
}
