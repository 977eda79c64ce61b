package controlplane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

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

	env        *envtest.Environment
	stopServer func() error
	dir        string
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

// Start starts etcd and kube-apiserver, installs artifacts/crds, and serves the conversion
// webhook. Stop undoes all of it.
func Start() (_ *ControlPlane, err error) {
	// The webhook server logs through controller-runtime's logger; send it to klog.
	ctrllog.SetLogger(klog.NewKlogr())
	assets, err := Assets()
	if err != nil {
		return nil, err
	}
	scheme, err := ourwebhook.NewScheme()
	if err != nil {
		return nil, err
	}
	cp := &ControlPlane{Assets: assets}
	defer func() {
		if err != nil {
			err = errors.Join(err, cp.Stop())
		}
	}()
	cp.env = &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		CRDDirectoryPaths:        []string{filepath.Join(RepoRoot(), "artifacts", "crds")},
		ErrorIfCRDPathMissing:    true,
		Scheme:                   scheme,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	if cp.Config, err = cp.env.Start(); err != nil {
		return nil, fmt.Errorf("starting etcd and kube-apiserver from %s: %w", assets, err)
	}
	if cp.stopServer, err = serveConversion(cp.env.WebhookInstallOptions, scheme); err != nil {
		return nil, err
	}
	user, err := cp.env.ControlPlane.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, err
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return nil, err
	}
	if cp.dir, err = os.MkdirTemp("", "egressgw-controlplane-"); err != nil {
		return nil, err
	}
	cp.Kubeconfig = filepath.Join(cp.dir, "kubeconfig")
	if err := os.WriteFile(cp.Kubeconfig, kubeconfig, 0o600); err != nil {
		return nil, err
	}
	return cp, nil
}

// Stop stops the webhook, kube-apiserver and etcd, and removes their files.
func (cp *ControlPlane) Stop() error {
	var errs []error
	if cp.stopServer != nil {
		errs = append(errs, cp.stopServer())
	}
	if cp.env != nil && cp.Config != nil {
		errs = append(errs, cp.env.Stop())
	}
	if cp.dir != "" {
		errs = append(errs, os.RemoveAll(cp.dir))
	}
	return errors.Join(errs...)
}

// StartForTest starts a control plane that stops when the test ends. It fails the test,
// never skips it, when the control plane cannot start.
func StartForTest(t testing.TB) *ControlPlane {
	t.Helper()
	cp, err := Start()
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

// serveConversion serves the conversion webhook at the address and with the certificate
// that envtest patched into the CRDs, and waits until it answers.
func serveConversion(opts envtest.WebhookInstallOptions, scheme *runtime.Scheme) (stop func() error, err error) {
	server := webhook.NewServer(webhook.Options{
		Host: opts.LocalServingHost, Port: opts.LocalServingPort, CertDir: opts.LocalServingCertDir,
	})
	server.Register(ourwebhook.ConversionPath, ourwebhook.NewConversionHandler(scheme))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- server.Start(ctx) }()
	stop = func() error {
		cancel()
		return <-done
	}
	deadline := time.Now().Add(30 * time.Second)
	for server.StartedChecker()(&http.Request{}) != nil {
		if time.Now().After(deadline) {
			return nil, errors.Join(errors.New("the conversion webhook did not start in 30s"), stop())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return stop, nil
}

// Kubectl runs kubectl against the control plane, with stdin as its input if not nil.
// It returns stdout, and a *KubectlError that carries stderr.
func (cp *ControlPlane) Kubectl(stdin []byte, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(cp.Assets, "kubectl"), append([]string{"--kubeconfig", cp.Kubeconfig}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), &KubectlError{Args: args, Stderr: stderr.String(), Err: err}
	}
	return stdout.String(), nil
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
