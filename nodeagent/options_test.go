package nodeagent

import (
	"flag"
	"io"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"
)

func TestValidateNamesTheFlag(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Options)
		want   []string // empty: valid
	}{
		{name: "the defaults, with a node name", change: func(*Options) {}},
		{name: "no node name", change: func(o *Options) { o.NodeName = "" }, want: []string{"--node-name is required"}},
		{name: "a lease in seconds' fractions", change: func(o *Options) { o.Heartbeat.LeaseDuration = 1500*time.Millisecond + time.Microsecond },
			want: []string{"--lease-duration 1.500001s must be a whole number of milliseconds"}},
		{name: "renewals too rare for the lease", change: func(o *Options) { o.Heartbeat.RenewInterval = 600 * time.Millisecond },
			want: []string{"--renew-interval 600ms must be positive and at most half of --lease-duration 1s"}},
		{name: "heartbeats too rare for the lease", change: func(o *Options) { o.Heartbeat.Interval = 400 * time.Millisecond },
			want: []string{"--heartbeat-interval 400ms must be positive and at most a third"}},
		{name: "heartbeat timing unchecked without heartbeats", change: func(o *Options) {
			o.Heartbeat.ControllerLease, o.Heartbeat.Interval, o.Heartbeat.LeaseRefresh = "", 0, 0
		}},
		{name: "lease refresh below the renewals", change: func(o *Options) { o.Heartbeat.LeaseRefresh = 100 * time.Millisecond },
			want: []string{"--lease-refresh 100ms must be at least --renew-interval 250ms"}},
		{name: "a controller lease without its namespace", change: func(o *Options) { o.Heartbeat.ControllerLease = "egressgw-controller" },
			want: []string{`--controller-lease "egressgw-controller" must be namespace/name`}},
		{name: "no bpf dir", change: func(o *Options) { o.BPFDir = "" }, want: []string{"--bpf-dir is required"}},
		{name: "cluster and pod CIDRs", change: func(o *Options) { o.ClusterCIDRs, o.PodCIDRs = "198.18.0.0/15, 10.96.0.0/12,", "198.18.1.0/24" }},
		{name: "a cluster CIDR that is not one", change: func(o *Options) { o.ClusterCIDRs = "198.18.0.0/15,198.51.100.0" },
			want: []string{`--cluster-cidrs: "198.51.100.0" is not an IPv4 CIDR such as 10.96.0.0/12`}},
		{name: "an IPv6 pod CIDR", change: func(o *Options) { o.PodCIDRs = "fd00::/64" }, want: []string{`--pod-cidrs: "fd00::/64" is not an IPv4 CIDR`}},
		{name: "every problem at once", change: func(o *Options) { o.NodeName, o.BPFDir, o.PodCIDRs = "", "", "x" },
			want: []string{"--node-name", "--bpf-dir", "--pod-cidrs"}},
		{name: "uninstall needs no node name or timing", change: func(o *Options) {
			o.Uninstall, o.NodeName, o.Heartbeat = true, "", HeartbeatOptions{ControllerLease: "x"}
		}},
		{name: "uninstall needs the bpf dir", change: func(o *Options) { o.Uninstall, o.BPFDir = true, "" }, want: []string{"--bpf-dir is required"}},
		{name: "uninstall refuses a bad CIDR", change: func(o *Options) { o.Uninstall, o.ClusterCIDRs = true, "10.0.0.0/33" },
			want: []string{`--cluster-cidrs: "10.0.0.0/33"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := NewOptions()
			o.NodeName = "worker1"
			tt.change(o)
			err := o.Validate()
			if len(tt.want) == 0 && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if len(tt.want) > 0 && err == nil {
				t.Fatalf("accepted, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want it to say %q", err, w)
				}
			}
		})
	}
}

// TestFlags: the flags parse as the manifests and the test harness give them (--flag=value
// and --flag value, klog's -v=3), and Complete parses the lists as the agent reads them.
func TestFlags(t *testing.T) {
	t.Setenv("NODE_NAME", "from-env")
	o := NewOptions()
	fs := pflag.NewFlagSet("egressgw-agent", pflag.ContinueOnError)
	o.AddFlags(fs)
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	fs.AddGoFlagSet(klogFlags)
	fs.SetOutput(io.Discard)
	t.Cleanup(func() { _ = klogFlags.Set("v", "0") }) // klog's verbosity is global
	args := []string{"--kubeconfig=/etc/kubeconfig", "--bpf-dir", "/sys/fs/bpf/node1",
		"--interfaces= eth*, ens3 ,", "--cluster-cidrs=198.18.0.0/15,10.96.0.1/12", "--lease-duration=600ms",
		"--renew-interval=150ms", "--heartbeat-interval=100ms", "--controller-lease=ns/lease", "--probe-bind-address=127.0.0.1:9464", "-v=3"}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := o.Complete(); err != nil {
		t.Fatal(err)
	}
	if o.NodeName != "from-env" || o.Kubeconfig != "/etc/kubeconfig" || o.BPFDir != "/sys/fs/bpf/node1" ||
		o.Heartbeat.LeaseDuration != 600*time.Millisecond || o.Heartbeat.RenewInterval != 150*time.Millisecond {
		t.Errorf("options %+v", o)
	}
	if v := klogFlags.Lookup("v").Value.String(); v != "3" {
		t.Errorf("-v=3 set klog's verbosity to %s", v)
	}
	if want := []string{"eth*", "ens3"}; !slices.Equal(o.parsed.interfaces, want) {
		t.Errorf("interfaces %q, want %q", o.parsed.interfaces, want)
	}
	if want := []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("10.96.0.0/12")}; !slices.Equal(o.parsed.clusterCIDRs, want) {
		t.Errorf("cluster CIDRs %v, want %v, masked", o.parsed.clusterCIDRs, want)
	}
	if o.parsed.podCIDRs != nil {
		t.Errorf("pod CIDRs %v, want none: they come from the Node object", o.parsed.podCIDRs)
	}
	if o.parsed.leaseNamespace != "ns" || o.parsed.leaseName != "lease" {
		t.Errorf("controller lease %s/%s, want ns/lease", o.parsed.leaseNamespace, o.parsed.leaseName)
	}
	for _, gone := range []string{"--tunnel-name=egw0", "--tunnel-port=4788"} {
		if err := fs.Parse([]string{gone}); err == nil {
			t.Errorf("%s is accepted", gone)
		}
	}
}
