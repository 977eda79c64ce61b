package nodeagent

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/egressgw/egressgw/apiserver/routing"
	"github.com/egressgw/egressgw/bpf"
)

// A CNI that redirects pod traffic in BPF (bpf_redirect from the pod's interface to an
// uplink, or into its overlay) sends it past the node's routing, and so past the
// steering, which is routing by mark: a selected pod's traffic would leave with the
// node's IP, or another node's. The agent cannot vouch for a pod whose interface carries
// another program. It parks such a pod in the unknown set, whose routes drop every policy
// destination in egw_from_pod (kept first among the interface's tcx programs, before any
// redirect), names it in the PodsCovered condition and in status.redirectedPods (the
// pod's view says Drop), and counts it in egressgw_agent_pods_uncovered. The uplinks'
// egw_uplink_out drops, besides, what leaves them from a selected pod without having
// been through egw_from_pod (an XDP program, which runs before tc, or a moment before the
// agent noticed).

// maxRedirectedPods is how many pods status.redirectedPods lists: the API's bound.
const maxRedirectedPods = 1024

// redirectedPods parks the pods of redirected (their IPs, with why) in the table's
// unknown set, and names them: for PodsCovered ("namespace/name: why") and for
// status.redirectedPods ("namespace/name"), both sorted.
func (s snapshot) redirectedPods(t routing.Table, redirected map[netip.Addr]string) (routing.Table, []string, []string) {
	if len(redirected) == 0 {
		return t, nil, nil
	}
	park := map[netip.Addr]bool{}
	var uncovered, names []string
	for _, p := range s.pods {
		ip := routing.PodOf(p).IP
		why, ok := redirected[ip]
		if !ok || p.Spec.HostNetwork || routing.Finished(p) {
			continue
		}
		park[ip] = true
		key := p.Namespace + "/" + p.Name
		uncovered = append(uncovered, key+": "+why)
		names = append(names, key)
	}
	slices.Sort(uncovered)
	slices.Sort(names)
	return parked(t, park), uncovered, names
}

// foreignPrograms asks the dataplane, for every pod interface the attacher put
// egw_from_pod on, which other programs run there, and returns the pods (by IP) of the
// interfaces that have any, with why.
func (at *attacher) foreignPrograms() (map[netip.Addr]string, error) {
	out, err := at.findForeign()
	at.foreign = out
	return out, err
}

// foreignChanged says whether the programs on the pods' interfaces changed since the
// last pass looked: the loop asks every programCheck, as no API event tells of them.
func (at *attacher) foreignChanged() bool {
	now, err := at.findForeign()
	return err == nil && !maps.Equal(now, at.foreign)
}

// programCheck is how often the loop looks for programs put on, or taken off, the pods'
// interfaces between passes.
const programCheck = time.Second

func (at *attacher) findForeign() (map[netip.Addr]string, error) {
	out := map[netip.Addr]string{}
	var errs []error
	for _, ifindex := range slices.Sorted(maps.Keys(at.pods)) {
		foreign, moved, err := at.dp.ForeignPrograms(ifindex)
		if err != nil {
			errs = append(errs, err)
		}
		if len(foreign) == 0 {
			continue
		}
		why := redirectReason(foreign, moved)
		for _, ip := range at.pods[ifindex] {
			out[ip] = why
		}
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("looking for other programs on the pods' interfaces: %w", errs[0])
	}
	return out, nil
}

func redirectReason(foreign []bpf.ForeignProgram, moved bool) string {
	names := make([]string, len(foreign))
	xdp := false
	for i, p := range foreign {
		names[i] = p.String()
		xdp = xdp || p.Hook == "xdp"
	}
	why := fmt.Sprintf("another BPF program is on its interface (%s) and could send its packets past the node's routing, and the steering, so its selected traffic is dropped", strings.Join(names, ", "))
	if moved {
		why += "; that program ran ahead of egressgw's, which runs first again"
	}
	if xdp {
		why += "; an XDP program runs before egressgw's whatever it does: the uplinks drop what leaves them from a selected pod unsteered"
	}
	return why
}
