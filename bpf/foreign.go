package bpf

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
)

// Another program on a pod's interface may send the pod's packets past the node's
// routing (a CNI that redirects in BPF: bpf_redirect to an uplink or into its overlay),
// and with them past the steering, which is routing by mark: selected traffic would then
// leave with the node's IP, or another node's. The agent cannot vouch for such a pod.
// ForeignPrograms finds those programs, and keeps egw_from_pod first among the tcx
// programs, so that its drop of the pod's selected traffic comes before any redirect.

// ForeignProgram is a BPF program on the ingress of a pod's interface that is not
// egressgw's.
type ForeignProgram struct {
	ID   ebpf.ProgramID
	Name string
	// Hook is where it runs: "tcx ingress", "tc ingress" (cls_bpf under clsact) or "xdp".
	Hook string
}

func (p ForeignProgram) String() string {
	name := p.Name
	if name == "" {
		name = "unnamed"
	}
	return fmt.Sprintf("%s program %d (%s)", p.Hook, p.ID, name)
}

// ForeignPrograms lists the programs on the ingress of the pod interface ifindex other
// than egw_from_pod: tcx, legacy tc filters, XDP. If a tcx program runs ahead of
// egw_from_pod, egw_from_pod is attached again at the head, and the result says so
// (moved); an XDP program runs before tc whatever the agent does.
func (d *Dataplane) ForeignPrograms(ifindex int) (foreign []ForeignProgram, moved bool, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ours, err := loadedID(d.objs.EgwFromPod)
	if err != nil {
		return nil, false, err
	}
	res, err := link.QueryPrograms(link.QueryOptions{Target: ifindex, Attach: ebpf.AttachTCXIngress})
	if err != nil {
		return nil, false, fmt.Errorf("listing the tcx programs on interface %d: %w", ifindex, err)
	}
	first := true
	for _, p := range res.Programs {
		if p.ID == ours {
			if !first {
				moved = true
			}
			continue
		}
		first = false
		foreign = append(foreign, ForeignProgram{ID: p.ID, Name: programName(p.ID), Hook: "tcx ingress"})
	}
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return nil, false, fmt.Errorf("finding interface %d: %w", ifindex, err)
	}
	if x := l.Attrs().Xdp; x != nil && x.Attached {
		foreign = append(foreign, ForeignProgram{ID: ebpf.ProgramID(x.ProgId), Name: programName(ebpf.ProgramID(x.ProgId)), Hook: "xdp"})
	}
	filters, err := netlink.FilterList(l, netlink.HANDLE_MIN_INGRESS)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) && !strings.Contains(err.Error(), "no such file") {
		return nil, false, fmt.Errorf("listing the tc filters on interface %d: %w", ifindex, err)
	}
	for _, f := range filters {
		if bf, ok := f.(*netlink.BpfFilter); ok {
			foreign = append(foreign, ForeignProgram{ID: ebpf.ProgramID(bf.Id), Name: bf.Name, Hook: "tc ingress"})
		}
	}
	if moved {
		path := d.linkPath(podLinkName(ifindex))
		if err := detach(path); err != nil {
			return foreign, false, err
		}
		if err := d.attach(podLinkName(ifindex), ifindex); err != nil {
			return foreign, false, fmt.Errorf("putting egw_from_pod first again on interface %d: %w", ifindex, err)
		}
	}
	return foreign, moved, nil
}

func loadedID(p *ebpf.Program) (ebpf.ProgramID, error) {
	info, err := p.Info()
	if err != nil {
		return 0, fmt.Errorf("reading program %s: %w", p, err)
	}
	id, ok := info.ID()
	if !ok {
		return 0, fmt.Errorf("the kernel gives no id for program %s", p)
	}
	return id, nil
}

// programName is the name the kernel has for program id, or "" if it cannot be read.
func programName(id ebpf.ProgramID) string {
	p, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return ""
	}
	defer p.Close()
	info, err := p.Info()
	if err != nil {
		return ""
	}
	return info.Name
}
