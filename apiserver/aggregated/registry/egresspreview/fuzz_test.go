package egresspreview

import (
	"net/netip"
	"testing"

	"github.com/egressgw/egressgw/apiserver/apis/egress/v1alpha1"
)

// FuzzValidateSpec: whatever a user writes in an EgressPreview, validation does not panic;
// it either refuses with field paths, or accepts a request the preview can run: one source
// (a pod's IPv4 address, or a namespace and a name), an IPv4 destination, and a port the
// protocol can carry.
func FuzzValidateSpec(f *testing.F) {
	f.Add("", "alice", "frontend", "8.8.8.8", "TCP", int32(443))
	f.Add("198.18.1.10", "", "", "203.0.113.10", "UDP", int32(53))
	f.Add("198.18.1.10", "alice", "", "::1", "ICMP", int32(1))
	f.Add("", "", "", "", "", int32(-1))
	f.Add("1.2.3", "Alice", "a_b", "8.8.8.8/32", "tcp", int32(70000))
	f.Fuzz(func(t *testing.T, ip, namespace, name, dst, proto string, port int32) {
		spec := v1alpha1.EgressPreviewSpec{
			Source:      v1alpha1.PreviewSource{IP: ip, Namespace: namespace, Name: name},
			Destination: dst,
			Protocol:    v1alpha1.Protocol(proto),
			Port:        port,
		}
		req, errs := validateSpec(&spec)
		for _, e := range errs {
			if e.Field == "" || e.Type == "" || e.Detail == "" && e.Type != "FieldValueRequired" && e.Type != "FieldValueNotSupported" {
				t.Errorf("an error without a field path, type or advice: %#v", e)
			}
		}
		if len(errs) > 0 {
			return
		}
		if byIP := req.ip.IsValid(); byIP == (req.namespace != "" || req.name != "") {
			t.Fatalf("accepted with no single source: %+v", req)
		}
		if req.ip.IsValid() && !req.ip.Is4() {
			t.Fatalf("accepted a source that is not IPv4: %v", req.ip)
		}
		if d := req.pkt.Destination; !d.Is4() || d != netip.MustParseAddr(dst) {
			t.Fatalf("accepted destination %q as %v", dst, d)
		}
		if req.pkt.Port < 0 || req.pkt.Port > 65535 || req.pkt.Protocol == "ICMP" && req.pkt.Port != 0 {
			t.Fatalf("accepted port %d for %s", req.pkt.Port, req.pkt.Protocol)
		}
	})
}
