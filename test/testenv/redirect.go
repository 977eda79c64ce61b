package testenv

import (
	"fmt"
	"net"
	"os"
	"runtime"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// AttachRedirect does what a CNI that redirects pod traffic in BPF does: it attaches, at
// the head of the tcx ingress of interface dev in namespace ns (a pod's host side), a
// program that sends every IPv4 packet out of interface to, by the kernel's route and
// neighbour table (bpf_redirect_neigh), past the node's routing and netfilter; other
// packets go on. Closing the link detaches it.
func AttachRedirect(ns, dev, to string) (link.Link, error) {
	var l link.Link
	err := InNetns(ns, func() error {
		from, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		out, err := net.InterfaceByName(to)
		if err != nil {
			return err
		}
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Name: "test_redirect", Type: ebpf.SchedCLS, License: "Apache-2.0",
			Instructions: asm.Instructions{
				// skb->protocol is big-endian: ETH_P_IP reads 0x0008 on a little-endian host.
				asm.LoadMem(asm.R2, asm.R1, 16, asm.Word),
				asm.JNE.Imm(asm.R2, 0x0008, "next"),
				asm.Mov.Imm(asm.R1, int32(out.Index)),
				asm.Mov.Imm(asm.R2, 0),
				asm.Mov.Imm(asm.R3, 0),
				asm.Mov.Imm(asm.R4, 0),
				asm.FnRedirectNeigh.Call(),
				asm.Return(),
				asm.Mov.Imm(asm.R0, -1).WithSymbol("next"), // TCX_NEXT
				asm.Return(),
			},
		})
		if err != nil {
			return fmt.Errorf("loading the redirecting program: %w", err)
		}
		defer prog.Close() // the link holds it
		l, err = link.AttachTCX(link.TCXOptions{Interface: from.Index, Program: prog, Attach: ebpf.AttachTCXIngress, Anchor: link.Head()})
		return err
	})
	return l, err
}

// InNetns runs f on a thread in the named network namespace ns. Sockets f opens stay in
// ns, whichever goroutine uses them later.
func InNetns(ns string, f func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + ns)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering netns %s: %w", ns, err)
	}
	ferr := f()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked, so the runtime ends it with this goroutine.
		return fmt.Errorf("leaving netns %s: %w", ns, err)
	}
	runtime.UnlockOSThread()
	return ferr
}
