package controller

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestOptions(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr []string // parts of Validate's error, one per problem; none: valid
		// want checks the completed options; nil: no check beyond validity.
		want func(*Options) string
	}{{
		name: "no flags: the defaults the manifests rely on",
		want: func(o *Options) string {
			e := o.Election
			if !o.LeaderElection || e.Namespace != "egressgw-system" || e.LeaseDuration != 15*time.Second || e.RenewDeadline != 10*time.Second ||
				e.RetryPeriod != 2*time.Second || e.AckHold != 90*time.Second || o.Grace != 500*time.Millisecond ||
				o.MetricsAddr != ":8443" || o.ProbeAddr != ":8081" || o.HeartbeatAddr != "" || o.HeartbeatAdvertise != "" || o.Kubeconfig != "" {
				return "defaults changed"
			}
			return ""
		},
	}, {
		name: "artifacts/controller/deployment.yaml's flags",
		args: []string{"--leader-elect", "--leader-election-namespace=egressgw-system",
			"--heartbeat-bind-address=0.0.0.0:7471", "--heartbeat-advertise-address=198.18.0.7:7471"},
		want: func(o *Options) string {
			if o.HeartbeatAdvertise != "198.18.0.7:7471" {
				return "advertise " + o.HeartbeatAdvertise
			}
			return ""
		},
	}, {
		name: "the test cluster's flags: agents send heartbeats to the bind address",
		args: []string{"--kubeconfig=/tmp/node.kubeconfig", "--leader-elect=true", "--leader-election-namespace=egressgw-system",
			"--leader-elect-lease-duration=2s", "--leader-elect-renew-deadline=1.5s", "--leader-elect-retry-period=250ms",
			"--heartbeat-hold=2s", "--heartbeat-bind-address=198.18.0.2:7471", "--grace=200ms",
			"--metrics-bind-address=0", "--health-probe-bind-address=0"},
		want: func(o *Options) string {
			if o.HeartbeatAdvertise != "198.18.0.2:7471" || o.Kubeconfig != "/tmp/node.kubeconfig" || o.Grace != 200*time.Millisecond || o.Election.RetryPeriod != 250*time.Millisecond {
				return "flags not taken"
			}
			return ""
		},
	}, {
		name:    "election timings out of order",
		args:    []string{"--leader-elect-renew-deadline=20s"},
		wantErr: []string{"--leader-elect-lease-duration 15s must exceed --leader-elect-renew-deadline 20s, which must exceed --leader-elect-retry-period 2s (> 0)"},
	}, {
		name:    "a hold shorter than the election Lease",
		args:    []string{"--heartbeat-hold=10s"},
		wantErr: []string{"--heartbeat-hold 10s must be at least --leader-elect-lease-duration 15s"},
	}, {
		name: "without leader election its flags are not checked",
		args: []string{"--leader-elect=false", "--leader-elect-renew-deadline=20s", "--leader-election-namespace="},
	}, {
		name:    "no namespace for the election Lease",
		args:    []string{"--leader-election-namespace="},
		wantErr: []string{"--leader-election-namespace is required with --leader-elect"},
	}, {
		name:    "a bind address that is not ip:port",
		args:    []string{"--heartbeat-bind-address=controller:7471", "--heartbeat-advertise-address=198.18.0.7:7471"},
		wantErr: []string{`--heartbeat-bind-address "controller:7471" must be ip:port`},
	}, {
		name:    "binding every address with nothing advertised",
		args:    []string{"--heartbeat-bind-address=0.0.0.0:7471"},
		wantErr: []string{`--heartbeat-advertise-address "0.0.0.0:7471" must be an ip:port the node agents reach, such as $(POD_IP):7471`},
	}, {
		name:    "every problem at once",
		args:    []string{"--heartbeat-hold=1s", "--heartbeat-bind-address=0.0.0.0:7471", "--grace=-1s"},
		wantErr: []string{"--heartbeat-hold 1s", "--heartbeat-advertise-address", "--grace -1s must not be negative"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := NewOptions()
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			o.AddFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			err := o.Validate()
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("Validate() = nil, want errors saying %q", tt.wantErr)
				}
				if got := strings.Count(err.Error(), "\n") + 1; got != len(tt.wantErr) {
					t.Errorf("Validate() = %v: %d problems, want %d", err, got, len(tt.wantErr))
				}
				for _, want := range tt.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("Validate() = %v, want it to say %q", err, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Validate() = %v", err)
			}
			if err := o.Complete(); err != nil {
				t.Fatal(err)
			}
			if tt.want != nil {
				if msg := tt.want(o); msg != "" {
					t.Errorf("%s: %+v", msg, o)
				}
			}
		})
	}
}
