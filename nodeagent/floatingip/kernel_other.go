//go:build !linux

package floatingip

import (
	"errors"
	"net/netip"
)

var errNotLinux = errors.New("floating IPs need Linux; run the node agent on a Linux node")

// otherKernel fails every call: floating IPs exist only on Linux.
type otherKernel struct{}

var _ kernel = otherKernel{}

func newKernel() kernel { return otherKernel{} }

func (otherKernel) Links() ([]link, error)                            { return nil, errNotLinux }
func (otherKernel) Addrs() ([]address, error)                         { return nil, errNotLinux }
func (otherKernel) Routers() (map[int][]netip.Addr, error)            { return nil, errNotLinux }
func (otherKernel) AddAddr(int, netip.Addr, string, uint32) error     { return errNotLinux }
func (otherKernel) RefreshAddr(int, netip.Addr, string, uint32) error { return errNotLinux }
func (otherKernel) DelAddr(int, netip.Addr, string) error             { return errNotLinux }
func (otherKernel) OpenARP(link) (arpConn, error)                     { return nil, errNotLinux }
