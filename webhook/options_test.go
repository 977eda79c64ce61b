package webhook

import (
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestOptions(t *testing.T) {
	for _, tc := range []struct {
		name      string
		args      []string
		wantErr   string // a part of Validate's error; empty: valid
		wantNames []string
	}{
		{name: "the manifests' flags", args: []string{"--namespace=egressgw-system", "--service-name=egressgw-webhook"},
			wantNames: []string{"egressgw-webhook", "egressgw-webhook.egressgw-system", "egressgw-webhook.egressgw-system.svc", "egressgw-webhook.egressgw-system.svc.cluster.local"}},
		{name: "another service and namespace", args: []string{"--namespace", "gw", "--service-name", "hooks"},
			wantNames: []string{"hooks", "hooks.gw", "hooks.gw.svc", "hooks.gw.svc.cluster.local"}},
		{name: "no port", args: []string{"--port=0"}, wantErr: "--port 0 must be a TCP port"},
		{name: "no Secret", args: []string{"--secret-name="}, wantErr: "--secret-name is required"},
		{name: "no Service", args: []string{"--service-name="}, wantErr: "--service-name is required"},
		{name: "the cluster's CIDRs, empty items skipped", args: []string{"--service-cidrs=10.96.0.0/12", "--pod-cidrs=", "--service-name=s"},
			wantNames: []string{"s", "s.egressgw-system", "s.egressgw-system.svc", "s.egressgw-system.svc.cluster.local"}},
		{name: "a pod CIDR that is not one", args: []string{"--pod-cidrs=10.244.0.0/16,10.245.0.0"}, wantErr: `--pod-cidrs: "10.245.0.0" is not an IPv4 CIDR`},
		{name: "an IPv6 service CIDR", args: []string{"--service-cidrs=fd00::/108"}, wantErr: `--service-cidrs: "fd00::/108" is not an IPv4 CIDR`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := NewOptions()
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			o.AddFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			err := o.Validate()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Validate() = %v, want an error that says %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Validate() = %v", err)
			}
			if err := o.Complete(); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(o.DNSNames, tc.wantNames) {
				t.Errorf("DNSNames = %q, want %q", o.DNSNames, tc.wantNames)
			}
		})
	}
}
