package controlplane

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/egressgw/egressgw/test/testenv"
)

// The files envtest's kube-apiserver keeps in its certificate folder.
const (
	clientCAFile         = "client-cert-auth-ca.crt" // signs the client certificates of AddUser
	serviceAccountSigner = "sa-signer.key"           // signs service-account tokens
)

// KubeletClientCAFile writes, into the control plane's folder, the CAs a kubelet trusts
// client certificates from, and returns its path: the one kube-apiserver trusts (which
// signs the administrator's), and, with Options.Nodes and an AdvertiseAddress, the one of
// kube-apiserver's own client certificate for kubelets (kubectl logs and exec).
func (cp *ControlPlane) KubeletClientCAFile() (string, error) {
	certDir := cp.env.ControlPlane.GetAPIServer().CertDir
	var bundle []byte
	for _, name := range []string{clientCAFile, kubeletClientCA} {
		data, err := os.ReadFile(filepath.Join(certDir, name))
		if errors.Is(err, os.ErrNotExist) && name == kubeletClientCA {
			continue
		}
		if err != nil {
			return "", err
		}
		bundle = append(bundle, data...)
	}
	path := filepath.Join(cp.dir, "kubelet-client-ca.crt")
	return path, os.WriteFile(path, bundle, 0o600)
}

// UserKubeconfig writes a kubeconfig with a client certificate for user in groups, signed
// by the CA kube-apiserver trusts, into path. server, if not empty, replaces the API
// server's address (as seen from a network namespace); the certificate's name stays
// localhost, which kube-apiserver's serving certificate names.
func (cp *ControlPlane) UserKubeconfig(path, user string, groups []string, server string) error {
	u, err := cp.env.ControlPlane.AddUser(envtest.User{Name: user, Groups: groups}, nil)
	if err != nil {
		return fmt.Errorf("minting a client certificate for %s: %w", user, err)
	}
	data, err := u.KubeConfig()
	if err != nil {
		return err
	}
	cfg, err := clientcmd.Load(data)
	if err != nil {
		return err
	}
	if server != "" {
		for _, c := range cfg.Clusters {
			c.Server = server
			c.TLSServerName = "localhost"
		}
	}
	return clientcmd.WriteToFile(*cfg, path)
}

// StartControllers starts kube-scheduler and kube-controller-manager from bin (what
// hack/nodes.sh builds) on the host, each with a client certificate of its well-known
// user, and the controller manager with kube-apiserver's service-account signing key, so
// that each controller acts as its own service account, as kubeadm sets it up. They log
// into the control plane's folder and die with the test binary; Stop ends them.
//
// No controller allocates the Nodes' pod CIDRs: the harness that made the nodes' network
// knows them.
func (cp *ControlPlane) StartControllers(bin string) error {
	certDir := cp.env.ControlPlane.GetAPIServer().CertDir
	caFile := filepath.Join(cp.dir, "apiserver-ca.crt")
	if err := os.WriteFile(caFile, cp.Config.CAData, 0o600); err != nil {
		return err
	}
	type component struct {
		name, user string
		args       []string
	}
	for _, c := range []component{
		{name: "kube-scheduler", user: "system:kube-scheduler", args: []string{"--leader-elect=false"}},
		{name: "kube-controller-manager", user: "system:kube-controller-manager", args: []string{
			"--leader-elect=false",
			"--use-service-account-credentials=true",
			"--service-account-private-key-file=" + filepath.Join(certDir, serviceAccountSigner),
			"--root-ca-file=" + caFile,
			"--controllers=*",
		}},
	} {
		kubeconfig := filepath.Join(cp.dir, c.name+".kubeconfig")
		if err := cp.UserKubeconfig(kubeconfig, c.user, nil, ""); err != nil {
			return err
		}
		port, err := freePort()
		if err != nil {
			return err
		}
		args := append([]string{
			"--kubeconfig=" + kubeconfig,
			"--authentication-kubeconfig=" + kubeconfig,
			"--authorization-kubeconfig=" + kubeconfig,
			"--bind-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(port),
			"--v=1",
		}, c.args...)
		if err := cp.startComponent(filepath.Join(bin, c.name), args); err != nil {
			return err
		}
	}
	return nil
}

// startComponent starts a control-plane binary that logs to <dir>/<name>.log and dies
// with the test binary.
func (cp *ControlPlane) startComponent(path string, args []string) error {
	name := filepath.Base(path)
	log, err := os.Create(filepath.Join(cp.dir, name+".log"))
	if err != nil {
		return err
	}
	defer log.Close() // the child holds its own descriptor
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := testenv.Spawn(cmd); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	cp.components = append(cp.components, stoppable{name: name, cmd: cmd, exited: exited})
	// A bad flag ends it at once: say so here rather than as a Node that never gets ready.
	select {
	case err := <-exited:
		exited <- err
		data, _ := os.ReadFile(log.Name())
		return fmt.Errorf("%s exited at once: %v\n%s", name, err, data)
	case <-time.After(time.Second):
	}
	return nil
}

// stoppable is a process the control plane started itself.
type stoppable struct {
	name   string
	cmd    *exec.Cmd
	exited chan error
}

// stopComponents ends every component, each with SIGTERM and, after 10 s, SIGKILL.
func (cp *ControlPlane) stopComponents() error {
	var errs []error
	for _, c := range cp.components {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.exited:
		case <-time.After(10 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.exited
			errs = append(errs, fmt.Errorf("%s did not stop in 10 s of SIGTERM; killed it", c.name))
		}
	}
	cp.components = nil
	return errors.Join(errs...)
}

// ComponentLog is the path of the log of a component that StartControllers started.
func (cp *ControlPlane) ComponentLog(name string) string { return filepath.Join(cp.dir, name+".log") }
