package controlplane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	"github.com/egressgw/egressgw/test/testenv"
	ourwebhook "github.com/egressgw/egressgw/webhook"
)

// ControlPlane is a running etcd and kube-apiserver with the CRDs installed.
type ControlPlane struct {
	// Config reaches the API server as an administrator.
	Config *rest.Config
	// Kubeconfig is the path of a kubeconfig file for the same administrator.
	Kubeconfig string
	// Assets is the folder that holds the etcd, kube-apiserver and kubectl binaries.
	Assets string
	// WebhookURL is where the webhook server listens, https://127.0.0.1:port.
	WebhookURL string

	env           *envtest.Environment
	stopServer    func() error
	dir           string
	frontProxyDir string
	certDir       string         // kube-apiserver's certificates, when AdvertiseAddress is set
	restarted     *exec.Cmd      // kube-apiserver, once RestartAPIServer started it anew
	reapers       map[int]func() // by pid: watchdogs that kill etcd and kube-apiserver if the test binary dies
	components    []stoppable    // kube-scheduler and kube-controller-manager, once StartControllers ran
}

// RepoRoot is the root of this repository.
func RepoRoot() string {
	_, file, _, _ := goruntime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Assets returns the folder with the control-plane binaries: KUBEBUILDER_ASSETS if set,
// otherwise what hack/controlplane.sh builds (a no-op once built).
func Assets() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	out, err := exec.Command(filepath.Join(RepoRoot(), "hack", "controlplane.sh")).Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return "", fmt.Errorf("hack/controlplane.sh: %w\n%s", err, exit.Stderr)
		}
		return "", fmt.Errorf("hack/controlplane.sh: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// Start starts etcd and kube-apiserver, installs artifacts/crds and the validating webhook
// configuration from artifacts/webhook, and runs this project's webhook server on loopback
// with the certificates it manages itself: kube-apiserver verifies them through the
// caBundle the server publishes. Stop undoes all of it.
func Start() (*ControlPlane, error) { return StartWith(Options{}) }

// Options change what Start sets up.
type Options struct {
	// Bare starts only etcd and kube-apiserver: no CRDs, no webhook server and no webhook
	// configuration, as a cluster is before our install manifests are applied.
	Bare bool
	// NoAdmission removes the validating webhook configuration once the webhook server is
	// up: conversion still works, and tests can write what admission would refuse, such
	// as two gateways with one IP, the way two racing requests can.
	NoAdmission bool
	// Aggregation configures kube-apiserver's aggregation layer (front-proxy client
	// certificate, request-header flags, routing to endpoints), for aggregated API servers.
	Aggregation bool
	// Nodes makes kube-apiserver ready for real kubelets: the Node authorizer before RBAC,
	// as a kubeadm cluster has it, so that a kubelet with a system:node:<name> certificate
	// may register its Node and read what its pods need. StartControllers adds the
	// scheduler and the controller manager.
	Nodes bool
	// ServiceAccounts turns on what envtest turns off and a cluster has: the ServiceAccount
	// admission plugin, so that pods get a projected token bound to the pod (with its
	// node's name), and, with Nodes, NodeRestriction.
	ServiceAccounts bool
	// AdvertiseAddress is the address kube-apiserver publishes as the kubernetes Service's
	// endpoint, at its secure port: where pods reach it, once something there forwards to
	// the host's loopback. Its serving certificate then names it and the Service's IP.
	AdvertiseAddress string
	// EgressSelectorConfig is the path of an EgressSelectorConfiguration: kube-apiserver's
	// traffic to the cluster (webhooks, aggregated API servers, kubelets) goes where it
	// says, and aggregation routes to Service IPs, as in a cluster with kube-proxy.
	EgressSelectorConfig string
}

// StartWith is Start with options.
func StartWith(opts Options) (_ *ControlPlane, err error) {
	// The webhook server logs through controller-runtime's logger; send it to klog.
	ctrllog.SetLogger(klog.NewKlogr())
	assets, err := Assets()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	url := fmt.Sprintf("https://127.0.0.1:%d", port)
	crds, err := readCRDs(url)
	if err != nil {
		return nil, err
	}
	cp := &ControlPlane{Assets: assets, WebhookURL: url}
	defer func() {
		if err != nil {
			err = errors.Join(err, cp.Stop())
		}
	}()
	cp.env = &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	if opts.Aggregation {
		if cp.frontProxyDir, err = os.MkdirTemp("", "egressgw-front-proxy-"); err != nil {
			return nil, err
		}
		if err := enableAggregation(cp.env, cp.frontProxyDir, opts.EgressSelectorConfig == ""); err != nil {
			return nil, err
		}
	}
	api := cp.env.ControlPlane.GetAPIServer()
	if opts.Nodes {
		api.Configure().Set("authorization-mode", "Node,RBAC")
		// As kubeadm sets it: a node's name need not resolve where kube-apiserver runs.
		api.Configure().Set("kubelet-preferred-address-types", "InternalIP,ExternalIP,Hostname")
	}
	if opts.ServiceAccounts {
		api.Configure().Set("disable-admission-plugins", "")
		if opts.Nodes {
			api.Configure().Set("enable-admission-plugins", "NodeRestriction")
		}
	}
	if opts.AdvertiseAddress != "" {
		if cp.certDir, err = os.MkdirTemp("", "egressgw-apiserver-certs-"); err != nil {
			return nil, err
		}
		if err := writeServingCerts(api, cp.certDir, opts.AdvertiseAddress, opts.Nodes); err != nil {
			return nil, err
		}
		api.Configure().Set("advertise-address", opts.AdvertiseAddress)
	}
	if opts.EgressSelectorConfig != "" {
		api.Configure().Set("egress-selector-config-file", opts.EgressSelectorConfig)
	}
	before, err := testenv.Children(controlPlaneBinaries...)
	if err != nil {
		return nil, err
	}
	cp.Config, err = cp.env.Start()
	// Whatever envtest started, even if it then failed, dies with the test binary.
	if reapErr := cp.reapNew(before); reapErr != nil {
		err = errors.Join(err, reapErr)
	}
	if err != nil {
		return nil, fmt.Errorf("starting etcd and kube-apiserver from %s: %w", assets, err)
	}
	if opts.Bare {
		if err := cp.writeKubeconfig(); err != nil {
			return nil, err
		}
		return cp, nil
	}
	// Installed here rather than through envtest.Environment, which would rewrite the
	// conversion webhook of any CRD whose types its scheme does not know.
	if _, err := envtest.InstallCRDs(cp.Config, envtest.CRDInstallOptions{CRDs: crds}); err != nil {
		return nil, fmt.Errorf("installing the CRDs: %w", err)
	}
	if err := cp.writeKubeconfig(); err != nil {
		return nil, err
	}
	if err := cp.installWebhookConfiguration(url); err != nil {
		return nil, err
	}
	if cp.stopServer, err = startWebhook(cp.Config, port); err != nil {
		return nil, err
	}
	if opts.NoAdmission {
		if _, err := cp.Kubectl(nil, "delete", "validatingwebhookconfiguration", ourwebhook.ValidatingWebhookConfiguration); err != nil {
			return nil, err
		}
	}
	return cp, nil
}

// writeKubeconfig writes a kubeconfig for an administrator into a fresh folder.
func (cp *ControlPlane) writeKubeconfig() error {
	user, err := cp.env.ControlPlane.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return err
	}
	if cp.dir, err = os.MkdirTemp("", "egressgw-controlplane-"); err != nil {
		return err
	}
	cp.Kubeconfig = filepath.Join(cp.dir, "kubeconfig")
	return os.WriteFile(cp.Kubeconfig, kubeconfig, 0o600)
}

// StopWebhook stops the webhook server, leaving its configuration in place, as when its
// pods are gone.
func (cp *ControlPlane) StopWebhook() error {
	stop := cp.stopServer
	cp.stopServer = nil
	if stop == nil {
		return nil
	}
	return stop()
}

// controlPlaneBinaries are the command names of the processes envtest starts.
var controlPlaneBinaries = []string{"etcd", "kube-apiserver"}

// reapNew has the control-plane processes started since before die with the test
// binary: go test's timeout kills it with no cleanup run.
func (cp *ControlPlane) reapNew(before []int) error {
	now, err := testenv.Children(controlPlaneBinaries...)
	if err != nil {
		return err
	}
	for _, pid := range now {
		if !slices.Contains(before, pid) {
			if err := cp.reap(pid); err != nil {
				return err
			}
		}
	}
	return nil
}

// reap has process pid, which this process started but not from testenv.Spawn, die
// with the test binary, until unreap(pid) or Stop.
func (cp *ControlPlane) reap(pid int) error {
	stop, err := testenv.ReapOnExit(pid)
	if err != nil {
		return err
	}
	if cp.reapers == nil {
		cp.reapers = map[int]func(){}
	}
	cp.reapers[pid] = stop
	return nil
}

// unreap ends the watchdog of a process that has exited: its pid may be reused.
func (cp *ControlPlane) unreap(pid int) {
	if stop, ok := cp.reapers[pid]; ok {
		stop()
		delete(cp.reapers, pid)
	}
}

// Stop stops the webhook, kube-apiserver and etcd, and removes their files.
func (cp *ControlPlane) Stop() error {
	var errs []error
	for pid := range cp.reapers {
		cp.unreap(pid)
	}
	errs = append(errs, cp.stopComponents())
	if cp.stopServer != nil {
		errs = append(errs, cp.stopServer())
	}
	if cp.restarted != nil {
		_ = cp.restarted.Process.Signal(syscall.SIGTERM)
		_ = cp.restarted.Wait()
	}
	if cp.env != nil && cp.Config != nil {
		errs = append(errs, cp.env.Stop())
	}
	if cp.dir != "" {
		errs = append(errs, os.RemoveAll(cp.dir))
	}
	if cp.frontProxyDir != "" {
		errs = append(errs, os.RemoveAll(cp.frontProxyDir))
	}
	if cp.certDir != "" {
		errs = append(errs, os.RemoveAll(cp.certDir))
	}
	return errors.Join(errs...)
}

// StartForTest starts a control plane that stops when the test ends. It fails the test,
// never skips it, when the control plane cannot start.
func StartForTest(t testing.TB) *ControlPlane { return StartForTestWith(t, Options{}) }

// StartForTestWith is StartForTest with options.
func StartForTestWith(t testing.TB, opts Options) *ControlPlane {
	t.Helper()
	cp, err := StartWith(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			t.Errorf("stopping the control plane: %v", err)
		}
	})
	return cp
}

// ServiceCIDR is the service range kube-apiserver allocates from: the
// --service-cluster-ip-range that envtest gives it.
const ServiceCIDR = "10.0.0.0/24"

// startWebhook runs the webhook server on 127.0.0.1:port and waits until it is ready: its
// certificate is published and its informers have synced.
func startWebhook(cfg *rest.Config, port int) (stop func() error, err error) {
	ctx, cancel := context.WithCancel(context.Background())
	server, err := ourwebhook.New(ctx, cfg, ourwebhook.Options{
		Host: "127.0.0.1", Port: port,
		Namespace: WebhookNamespace, SecretName: "egressgw-webhook-certs",
		IPs:         []net.IP{net.IPv4(127, 0, 0, 1)},
		MetricsAddr: "0", ProbeAddr: "0",
		// The pods' ranges come from the Nodes' spec.podCIDRs, as with the manifests'
		// empty POD_CIDRS.
		ServiceCIDRs: []string{ServiceCIDR},
	})
	if err != nil {
		cancel()
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- server.Start(ctx) }()
	stop = func() error {
		cancel()
		return <-done
	}
	deadline := time.Now().Add(time.Minute)
	for server.Ready() != nil {
		select {
		case err := <-done:
			cancel()
			return nil, fmt.Errorf("the webhook server stopped: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, errors.Join(fmt.Errorf("the webhook server was not ready in a minute: %w", server.Ready()), stop())
		}
	}
	return stop, nil
}

// WebhookNamespace is where the webhook server keeps its certificate Secret.
const WebhookNamespace = "egressgw-system"

// installWebhookConfiguration creates the namespace of the webhook's Secret, and the
// validating webhook configuration of artifacts/webhook with its Service replaced by url.
func (cp *ControlPlane) installWebhookConfiguration(url string) error {
	if _, err := cp.Kubectl(nil, "create", "namespace", WebhookNamespace); err != nil {
		return err
	}
	data, err := os.ReadFile(filepath.Join(RepoRoot(), "artifacts", "webhook", "validating-webhook.yaml"))
	if err != nil {
		return err
	}
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	if err := yaml.UnmarshalStrict(data, &vwc); err != nil {
		return fmt.Errorf("artifacts/webhook/validating-webhook.yaml: %w", err)
	}
	for i := range vwc.Webhooks {
		cc := &vwc.Webhooks[i].ClientConfig
		cc.URL = ptr.To(url + *cc.Service.Path)
		cc.Service = nil
	}
	out, err := yaml.Marshal(&vwc)
	if err != nil {
		return err
	}
	_, err = cp.Kubectl(out, "create", "-f", "-")
	return err
}

// readCRDs reads artifacts/crds, with EgressNATPolicy converted by the webhook at url.
func readCRDs(url string) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	paths, err := filepath.Glob(filepath.Join(RepoRoot(), "artifacts", "crds", "*.yaml"))
	if err != nil || len(paths) == 0 {
		return nil, fmt.Errorf("no CRDs in artifacts/crds: %v", err)
	}
	var crds []*apiextensionsv1.CustomResourceDefinition
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.UnmarshalStrict(data, crd); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if crd.Name == ourwebhook.PolicyCRD {
			crd.Spec.Conversion = &apiextensionsv1.CustomResourceConversion{
				Strategy: apiextensionsv1.WebhookConverter,
				Webhook: &apiextensionsv1.WebhookConversion{
					ConversionReviewVersions: []string{"v1"},
					ClientConfig:             &apiextensionsv1.WebhookClientConfig{URL: ptr.To(url + ourwebhook.ConversionPath)},
				},
			}
		}
		crds = append(crds, crd)
	}
	return crds, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Kubectl runs kubectl against the control plane, with stdin as its input if not nil.
// It returns stdout, and a *KubectlError that carries stderr.
func (cp *ControlPlane) Kubectl(stdin []byte, args ...string) (string, error) {
	stdout, _, err := cp.KubectlOutputs(stdin, args...)
	return stdout, err
}

// KubectlOutputs is Kubectl that also returns stderr, where kubectl prints warnings.
func (cp *ControlPlane) KubectlOutputs(stdin []byte, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := cp.KubectlCommand(ctx, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), errOut.String(), &KubectlError{Args: args, Stderr: errOut.String(), Err: err}
	}
	return out.String(), errOut.String(), nil
}

// KubectlCommand is kubectl against the control plane, with a discovery cache of its own.
// kubectl's default cache is keyed by host and port only: a control plane of another
// test package that had the same port earlier (and the aggregated API) would otherwise
// lend this one its resource list for hours.
func (cp *ControlPlane) KubectlCommand(ctx context.Context, args ...string) *exec.Cmd {
	cache := filepath.Join(filepath.Dir(cp.Kubeconfig), "kubectl-cache")
	return exec.CommandContext(ctx, filepath.Join(cp.Assets, "kubectl"), append([]string{"--kubeconfig", cp.Kubeconfig, "--cache-dir", cache}, args...)...)
}

// KubectlError is a kubectl run that failed.
type KubectlError struct {
	Args   []string
	Stderr string
	Err    error
}

func (e *KubectlError) Error() string {
	return "kubectl " + strings.Join(e.Args, " ") + ": " + e.Err.Error() + ": " + e.Stderr
}

func (e *KubectlError) Unwrap() error { return e.Err }
