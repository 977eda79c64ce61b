package server

import (
	"strings"
	"testing"
)

func TestValidateNamesTheFlag(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Options)
		want   string // empty: valid
	}{
		{name: "the defaults", change: func(*Options) {}},
		{name: "cluster CIDRs", change: func(o *Options) { o.ClusterCIDRs = []string{"198.18.0.0/15", " 198.51.100.0/24"} }},
		{name: "a CIDR that is not one", change: func(o *Options) { o.ClusterCIDRs = []string{"198.51.100.0"} }, want: `--cluster-cidrs: "198.51.100.0" is not an IPv4 CIDR`},
		{name: "an IPv6 CIDR", change: func(o *Options) { o.ClusterCIDRs = []string{"fd00::/64"} }, want: "--cluster-cidrs"},
		{name: "no Secret", change: func(o *Options) { o.SecretName = "" }, want: "--secret-name is required"},
		{name: "no APIService", change: func(o *Options) { o.APIService = "" }, want: "--apiservice is required"},
		{name: "no watch history", change: func(o *Options) { o.WatchHistory = 0 }, want: "--watch-history 0 must be at least 1"},
		{name: "no watches per user", change: func(o *Options) { o.MaxWatchesPerUser = 0 }, want: "--max-watches-per-user 0 must be at least 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := NewOptions()
			tt.change(o)
			err := o.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("err = %v, want it to say %q", err, tt.want)
			}
		})
	}
}

func TestCompleteDerivesTheCertificateNames(t *testing.T) {
	o := NewOptions()
	o.ClusterCIDRs = []string{"198.51.100.7/24"}
	if err := o.Complete(); err != nil {
		t.Fatal(err)
	}
	if got := o.clusterCIDRs[0].String(); got != "198.51.100.0/24" {
		t.Errorf("cluster CIDR %s, want it masked", got)
	}
	// kube-apiserver verifies the server as <service>.<namespace>.svc.
	if got := strings.Join(o.dnsNames, " "); !strings.Contains(got, "egressgw-apiserver.egressgw-system.svc ") {
		t.Errorf("DNS names %q lack the Service's", got)
	}
	if o.Features.EnablePriorityAndFairness {
		t.Error("priority and fairness is on: kube-apiserver applies it before proxying, and it would need flowcontrol informers")
	}
}
