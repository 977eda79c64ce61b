package aggregated

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/egressgw/egressgw/apiserver/aggregated/server"
	versioned "github.com/egressgw/egressgw/apiserver/client/clientset/versioned"
	"github.com/egressgw/egressgw/test/controlplane"
	"github.com/egressgw/egressgw/test/testenv"
	"github.com/egressgw/egressgw/test/topology"
)

const (
	namespace  = controlplane.WebhookNamespace // egressgw-system, as in artifacts/
	apiService = "v1alpha1.egress.egressgw.io"
	port       = 8443
)

// serverURL is where the server listens, for clients that bypass kube-apiserver.
var serverURL = "https://" + net.JoinHostPort(topology.ControlIP.String(), fmt.Sprint(port))

// env is a real etcd and kube-apiserver with its aggregation layer on, and this project's
// aggregated API server running in this process (start) or in its own (startProcess),
// listening inside a network namespace:
// kube-apiserver refuses to proxy to loopback endpoints, so the server sits at
// topology.ControlIP, which the host reaches through its leg into the test segment. It is
// registered the way artifacts/apiserver registers it, with the endpoint of a Service
// without a selector pointing at that address.
type env struct {
	cp   *controlplane.ControlPlane
	kube kubernetes.Interface
	net  versioned.Interface
}

func start(t testing.TB, clusterCIDRs ...string) *env {
	t.Helper()
	e, ln := prepare(t)
	config, err := serverConfig(ln, e.cp.Kubeconfig, clusterCIDRs)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := config.Complete().New()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("the aggregated API server: %v", err)
			}
		case <-time.After(time.Minute):
			t.Error("the aggregated API server did not stop within a minute")
		}
	})
	e.waitAvailable(t, done, srv.Ready)
	return e
}

// startProcess is start with the aggregated API server in a process of its own, as it
// is deployed: a copy of this test binary that runs only the server (TestMain), on the
// listener this process opened inside the network namespace. Its heap, garbage
// collector and memory are its own, not shared with the test's clients.
func startProcess(t testing.TB, clusterCIDRs ...string) (*env, *exec.Cmd) {
	t.Helper()
	e, ln := prepare(t)
	file, err := ln.(*net.TCPListener).File()
	ln.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	args, err := json.Marshal(childArgs{Kubeconfig: e.cp.Kubeconfig, ClusterCIDRs: clusterCIDRs})
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), "apiserver.log")
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), serverChildEnv+"="+string(args))
	cmd.ExtraFiles = []*os.File{file} // fd 3
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		if err != nil {
			out, _ := os.ReadFile(logPath)
			err = fmt.Errorf("%w; the end of its log:\n%s", err, out[max(0, len(out)-2000):])
		}
		done <- err
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("the aggregated API server: %v", err)
			}
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			t.Error("the aggregated API server did not stop within a minute of SIGTERM")
		}
	})
	e.waitAvailable(t, done, func() error {
		resp, err := e.directClient(t).Get(serverURL + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /readyz: %s", resp.Status)
		}
		return nil
	})
	return e, cmd
}

// serverChildEnv, in the environment of a copy of the test binary, makes it run only the
// aggregated API server, with the childArgs it holds in JSON, on the listener at fd 3.
const serverChildEnv = "EGRESSGW_TEST_AGGREGATED_SERVER"

type childArgs struct {
	Kubeconfig   string
	ClusterCIDRs []string
}

func TestMain(m *testing.M) {
	if args := os.Getenv(serverChildEnv); args != "" {
		if err := runChild(args); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runChild runs the aggregated API server until SIGTERM.
func runChild(raw string) error {
	var args childArgs
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		return fmt.Errorf("%s: %w", serverChildEnv, err)
	}
	ln, err := net.FileListener(os.NewFile(3, "listener"))
	if err != nil {
		return fmt.Errorf("the listener at fd 3: %w", err)
	}
	config, err := serverConfig(ln, args.Kubeconfig, args.ClusterCIDRs)
	if err != nil {
		return err
	}
	srv, err := config.Complete().New()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := srv.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// prepare starts the control plane and a network namespace, registers the server with
// kube-apiserver, and opens the server's listener at ControlIP inside the namespace.
func prepare(t testing.TB) (*env, net.Listener) {
	t.Helper()
	testenv.RequireRoot(t, "the aggregated API server listens in a network namespace")
	cp := controlplane.StartForTestWith(t, controlplane.Options{Aggregation: true})
	topo, err := topology.New(topology.Config{Nodes: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Errorf("removing the network namespaces: %v", err)
		}
	})
	ln, err := topology.Listen(topo.Control, "tcp4", net.JoinHostPort(topology.ControlIP.String(), fmt.Sprint(port)))
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.CopyConfig(cp.Config)
	cfg.QPS, cfg.Burst = 5000, 5000
	e := &env{cp: cp, kube: kubernetes.NewForConfigOrDie(cfg), net: versioned.NewForConfigOrDie(cfg)}
	e.register(t)
	return e, ln
}

// serverConfig is the server's configuration, as the flags in artifacts/ make it, with
// kube-apiserver's admin kubeconfig for its clients and delegated authentication.
func serverConfig(ln net.Listener, kubeconfig string, clusterCIDRs []string) (*server.Config, error) {
	opts := server.NewOptions()
	opts.SecureServing.Listener = ln
	opts.Kubeconfig = kubeconfig
	opts.Authentication.RemoteKubeConfigFile = kubeconfig
	opts.Authorization.RemoteKubeConfigFile = kubeconfig
	opts.Namespace = namespace
	opts.ClusterCIDRs = clusterCIDRs
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if err := opts.Complete(); err != nil {
		return nil, err
	}
	return opts.Config()
}

// register creates the Service (without a selector), its endpoints at ControlIP, the
// APIService and the user roles, from artifacts/apiserver.
func (e *env) register(t testing.TB) {
	t.Helper()
	var svc corev1.Service
	readArtifact(t, "service.yaml", &svc)
	svc.Spec.Selector = nil
	svc.Spec.Ports[0].TargetPort = intstr.FromInt32(port)
	ctx := context.Background()
	if _, err := e.kube.CoreV1().Services(namespace).Create(ctx, &svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// kube-apiserver's aggregator finds the server through the Service's EndpointSlices.
	if _, err := e.kube.DiscoveryV1().EndpointSlices(namespace).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: svc.Name + "-netns", Namespace: namespace,
			Labels: map[string]string{discoveryv1.LabelServiceName: svc.Name, discoveryv1.LabelManagedBy: "egressgw-test"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{topology.ControlIP.String()}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To[int32](port)}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"apiservice.yaml", "aggregate-roles.yaml"} {
		mustKubectl(t, e.cp, nil, "apply", "-f", filepath.Join(controlplane.RepoRoot(), "artifacts", "apiserver", f))
	}
}

// waitAvailable waits for kube-apiserver to call the APIService Available: it reached the
// server and verified it with the caBundle the server published.
func (e *env) waitAvailable(t testing.TB, done <-chan error, ready func() error) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	var last string
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("the aggregated API server stopped: %v", err)
		default:
		}
		out, err := e.cp.Kubectl(nil, "get", "apiservice", apiService, "-o",
			`jsonpath={.status.conditions[?(@.type=="Available")].status} {.status.conditions[?(@.type=="Available")].message}`)
		last = strings.TrimSpace(out)
		if err == nil && strings.HasPrefix(last, "True") && ready() == nil {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("the APIService was not Available within 2 minutes: %q; server: %v", last, ready())
}

// directClient reaches the server without kube-apiserver, as the administrator (a client
// certificate the server verifies against kube-apiserver's client CA), verifying the
// server with the CA bundle it published.
func (e *env) directClient(t testing.TB) *http.Client {
	t.Helper()
	secret, err := e.kube.CoreV1().Secrets(namespace).Get(context.Background(), "egressgw-apiserver-certs", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(secret.Data["ca.crt"]) {
		t.Fatal("no CA in the server's Secret")
	}
	cert, err := tls.X509KeyPair(e.cp.Config.CertData, e.cp.Config.KeyData)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: roots, ServerName: "egressgw-apiserver." + namespace + ".svc", Certificates: []tls.Certificate{cert},
	}}}
}

func readArtifact(t testing.TB, name string, into any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(controlplane.RepoRoot(), "artifacts", "apiserver", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, into); err != nil {
		t.Fatalf("artifacts/apiserver/%s: %v", name, err)
	}
}

func mustKubectl(t testing.TB, cp *controlplane.ControlPlane, stdin []byte, args ...string) string {
	t.Helper()
	out, err := cp.Kubectl(stdin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// eventually retries check, which returns what is still wrong, until it returns "" or
// timeout passes.
func eventually(t testing.TB, timeout time.Duration, check func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		wrong := check()
		if wrong == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", timeout, wrong)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
