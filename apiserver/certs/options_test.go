package certs

import (
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	apiextensionsfake "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"
)

func TestNewRejectsBadOptions(t *testing.T) {
	valid := func() Options {
		return Options{Namespace: testNamespace, SecretName: testSecret, DNSNames: testDNSNames}
	}
	tests := []struct {
		name    string
		opts    func(*Options)
		wantErr string // "" means New must succeed
	}{
		{name: "defaults suffice", opts: func(*Options) {}},
		{name: "IPs alone suffice", opts: func(o *Options) { o.DNSNames, o.IPs = nil, testIPs }},
		{name: "no namespace", opts: func(o *Options) { o.Namespace = "" }, wantErr: "namespace and secret name are required"},
		{name: "no Secret name", opts: func(o *Options) { o.SecretName = "" }, wantErr: "namespace and secret name are required"},
		{name: "no names to serve", opts: func(o *Options) { o.DNSNames = nil }, wantErr: "at least one DNS name or IP"},
		{name: "empty DNS name", opts: func(o *Options) { o.DNSNames = []string{"a", ""} }, wantErr: "dnsNames[1] is empty"},
		{name: "not an IP", opts: func(o *Options) { o.IPs = []net.IP{{1, 2, 3}} }, wantErr: "ips[0] is not an IP"},
		{name: "negative interval", opts: func(o *Options) { o.CheckInterval = -time.Second }, wantErr: "must not be negative"},
		{
			name:    "certificate outliving a third of the CA",
			opts:    func(o *Options) { o.CAValidity, o.CertValidity = 30*day, 11*day },
			wantErr: "more than a third of CA validity",
		},
		{
			name: "certificate a third of the CA",
			opts: func(o *Options) { o.CAValidity, o.CertValidity = 30*day, 10*day },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := valid()
			tt.opts(&opts)
			_, err := New(kubefake.NewClientset(), apiextensionsfake.NewClientset(), opts)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("New() = %v, want no error", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("New() = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestNewNeedsClients(t *testing.T) {
	opts := Options{Namespace: testNamespace, SecretName: testSecret, DNSNames: testDNSNames}
	if _, err := New(nil, apiextensionsfake.NewClientset(), opts); err == nil {
		t.Errorf("New(nil, ...) succeeded, want an error")
	}
	if _, err := New(kubefake.NewClientset(), nil, opts); err == nil {
		t.Errorf("New(..., nil, ...) succeeded, want an error")
	}
}

func TestServiceDNSNames(t *testing.T) {
	got := ServiceDNSNames("egressgw-webhook", "egressgw-system")
	want := []string{"egressgw-webhook", "egressgw-webhook.egressgw-system", "egressgw-webhook.egressgw-system.svc", "egressgw-webhook.egressgw-system.svc.cluster.local"}
	if !slices.Equal(got, want) {
		t.Errorf("ServiceDNSNames = %q, want %q", got, want)
	}
}
