package egresspreview

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/egressgw/egressgw/apiserver/aggregated/netpolicy"
	"github.com/egressgw/egressgw/apiserver/apis/egress/v1alpha1"
)

// request is a preview request that passed validation.
type request struct {
	// namespace and name name the source pod; if name is empty, ip does.
	namespace, name string
	ip              netip.Addr
	pkt             netpolicy.Packet
}

var protocols = []string{string(v1alpha1.ProtocolTCP), string(v1alpha1.ProtocolUDP), string(v1alpha1.ProtocolSCTP), string(v1alpha1.ProtocolICMP)}

// validateSpec checks an EgressPreview's spec and says, with field paths, what to fix.
func validateSpec(spec *v1alpha1.EgressPreviewSpec) (request, field.ErrorList) {
	path := field.NewPath("spec")
	src, srcPath := spec.Source, path.Child("source")
	var req request
	var errs field.ErrorList
	switch {
	case src.IP != "" && (src.Namespace != "" || src.Name != ""):
		errs = append(errs, field.Forbidden(srcPath.Child("ip"), "name the pod by ip, or by namespace and name, not both"))
	case src.IP != "":
		ip, err := netip.ParseAddr(src.IP)
		if err != nil || !ip.Is4() {
			errs = append(errs, field.Invalid(srcPath.Child("ip"), src.IP, "must be a pod's IPv4 address, such as 198.18.1.10"))
		}
		req.ip = ip
	case src.Namespace == "" && src.Name == "":
		errs = append(errs, field.Required(srcPath, "name the source pod: namespace and name, or ip"))
	default:
		if src.Namespace == "" {
			errs = append(errs, field.Required(srcPath.Child("namespace"), "the source pod's namespace"))
		} else {
			for _, msg := range validation.IsDNS1123Label(src.Namespace) {
				errs = append(errs, field.Invalid(srcPath.Child("namespace"), src.Namespace, msg))
			}
		}
		if src.Name == "" {
			errs = append(errs, field.Required(srcPath.Child("name"), "the source pod's name"))
		} else {
			for _, msg := range validation.IsDNS1123Subdomain(src.Name) {
				errs = append(errs, field.Invalid(srcPath.Child("name"), src.Name, msg))
			}
		}
		req.namespace, req.name = src.Namespace, src.Name
	}
	var pktErrs field.ErrorList
	req.pkt, pktErrs = validatePacket(spec.Destination, spec.Protocol, spec.Port, path)
	return req, append(errs, pktErrs...)
}

// validatePacket checks a destination, protocol and port, under path (nil for the query
// parameters of the preview subresource). The protocol defaults to TCP.
func validatePacket(destination string, protocol v1alpha1.Protocol, port int32, path *field.Path) (netpolicy.Packet, field.ErrorList) {
	var pkt netpolicy.Packet
	var errs field.ErrorList
	dstPath := path.Child("destination") // a nil path makes a root
	switch ip, err := netip.ParseAddr(destination); {
	case destination == "":
		errs = append(errs, field.Required(dstPath, "the packet's IPv4 destination address, such as 8.8.8.8"))
	case err != nil || !ip.Is4():
		errs = append(errs, field.Invalid(dstPath, destination, "must be an IPv4 address such as 8.8.8.8: the egress NAT gateway steers IPv4 only"))
	default:
		pkt.Destination = ip
	}
	protoPath, portPath := path.Child("protocol"), path.Child("port")
	if protocol == "" {
		protocol = v1alpha1.ProtocolTCP
	}
	pkt.Protocol = corev1.Protocol(protocol)
	known := false
	for _, p := range protocols {
		known = known || p == string(protocol)
	}
	if !known {
		errs = append(errs, field.NotSupported(protoPath, protocol, protocols))
	}
	switch {
	case port < 0 || port > 65535:
		errs = append(errs, field.Invalid(portPath, port, "must be between 1 and 65535, or absent"))
	case port != 0 && protocol == v1alpha1.ProtocolICMP:
		errs = append(errs, field.Invalid(portPath, port, "ICMP has no ports: leave it out"))
	}
	pkt.Port = port
	return pkt, errs
}
