package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/klog/v2"

	"github.com/egressgw/egressgw/apiserver/aggregated/registry/egresspolicyview"
	"github.com/egressgw/egressgw/apiserver/aggregated/registry/egresspreview"
	"github.com/egressgw/egressgw/apiserver/aggregated/registry/podegress"
	"github.com/egressgw/egressgw/apiserver/aggregated/registry/watchlimit"
	"github.com/egressgw/egressgw/apiserver/aggregated/view"
	"github.com/egressgw/egressgw/apiserver/apis/egress"
	"github.com/egressgw/egressgw/apiserver/apis/egress/v1alpha1"
	"github.com/egressgw/egressgw/apiserver/certs"
)

// Server is the aggregated API server, built and not yet running.
type Server struct {
	generic *genericapiserver.GenericAPIServer
	caches  *caches
	config  *Config
}

// New builds the server: every resource's storage, wired in one map.
func (c CompletedConfig) New() (*Server, error) {
	generic, err := c.generic.New("egressgw-apiserver", genericapiserver.NewEmptyDelegate())
	if err != nil {
		return nil, err
	}
	authz := c.Generic.Authorization.Authorizer
	group := genericapiserver.NewDefaultAPIGroupInfo(egress.GroupName, c.scheme, runtime.NewParameterCodec(c.scheme), c.codecs)
	// Short lists are encoded whole, long ones item by item, as the generic server's
	// codecs encode every list (see streamListsFrom).
	group.NegotiatedSerializer = listSizedSerializer(c.codecs, group.NegotiatedSerializer)
	group.VersionedResourcesStorageMap[v1alpha1.SchemeGroupVersion.Version] = map[string]rest.Storage{
		"podegresses":            podegress.NewREST(c.Store, authz, c.Watches),
		"podegresses/preview":    egresspreview.NewPodREST(c.Store, authz),
		"egresspolicyviews":      egresspolicyview.NewREST(c.Store, authz),
		"egresspolicyviews/pods": egresspolicyview.NewPodsREST(c.Store, authz),
		"egresspreviews":         egresspreview.NewREST(c.Store, authz),
	}
	if err := generic.InstallAPIGroup(&group); err != nil {
		return nil, fmt.Errorf("installing %s: %w", egress.GroupName, err)
	}
	egresspreview.RegisterMetrics()
	watchlimit.RegisterMetrics()
	view.RegisterMetrics()
	caches, err := newCaches(c.Kube, c.Net, c.Store)
	if err != nil {
		return nil, err
	}
	return &Server{generic: generic, caches: caches, config: c.Config}, nil
}

// Run serves until ctx ends. It first loads a serving certificate (creating the Secret if
// need be), so the first handshake already has one; the views become ready once the
// informers have synced, and /readyz says so.
func (s *Server) Run(ctx context.Context) error {
	certsDone := make(chan error, 1)
	go func() { certsDone <- s.config.Certs.Run(ctx) }()
	if err := waitForCertificate(ctx, s.config.Certs); err != nil {
		return err
	}
	s.caches.start(ctx, s.config.Store)
	err := s.generic.PrepareRun().RunWithContext(ctx)
	return errors.Join(err, <-certsDone)
}

// Ready reports whether the server serves views with a certificate kube-apiserver trusts.
func (s *Server) Ready() error {
	if !s.config.Store.IsSynced() {
		return errors.New("the informer caches are still syncing")
	}
	return s.config.Certs.Ready()
}

func waitForCertificate(ctx context.Context, m *certs.Manager) error {
	for {
		if _, err := m.GetCertificate(nil); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no serving certificate was loaded: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
			klog.V(2).InfoS("Waiting for the serving certificate")
		}
	}
}
