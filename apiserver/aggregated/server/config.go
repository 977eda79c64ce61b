package server

import (
	"errors"
	"fmt"
	"net/http"

	apiextensionsclientset "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/healthz"
	"k8s.io/apiserver/pkg/util/compatibility"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	aggregatorclientset "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset"

	"github.com/egressgw/egressgw/apiserver/aggregated/registry/watchlimit"
	"github.com/egressgw/egressgw/apiserver/aggregated/view"
	"github.com/egressgw/egressgw/apiserver/apis/egress/install"
	"github.com/egressgw/egressgw/apiserver/apis/egress/openapi"
	"github.com/egressgw/egressgw/apiserver/apis/egress/v1alpha1"
	"github.com/egressgw/egressgw/apiserver/certs"
	versioned "github.com/egressgw/egressgw/apiserver/client/clientset/versioned"
)

// Config is everything New needs, built from Options.
type Config struct {
	Generic *genericapiserver.Config
	Kube    kubernetes.Interface
	Net     versioned.Interface
	Certs   *certs.Manager
	Store   *view.Store
	// Watches bounds the watches each user holds open.
	Watches *watchlimit.Limiter

	scheme *runtime.Scheme
	codecs serializer.CodecFactory
}

// completedConfig can only be made by Complete, so New never sees a config that skipped it.
type completedConfig struct {
	generic genericapiserver.CompletedConfig
	*Config
}

// CompletedConfig is a Config that went through Complete.
type CompletedConfig struct{ *completedConfig }

// Config builds the server's configuration: delegated authentication and authorization,
// serving with the certificate package certs keeps, OpenAPI v2 and v3, the view store.
func (o *Options) Config() (*Config, error) {
	restConfig, err := clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("reaching kube-apiserver (--kubeconfig %q): %w", o.Kubeconfig, err)
	}
	restConfig = rest.CopyConfig(restConfig)
	restConfig.UserAgent = "egressgw-apiserver"
	c := &Config{Store: view.New(o.clusterCIDRs, o.WatchHistory), Watches: watchlimit.New(o.MaxWatchesPerUser)}
	if c.scheme, c.codecs, err = newScheme(); err != nil {
		return nil, err
	}
	clients := []error{}
	var ext apiextensionsclientset.Interface
	var agg aggregatorclientset.Interface
	c.Kube, err = kubernetes.NewForConfig(restConfig)
	clients = append(clients, err)
	c.Net, err = versioned.NewForConfig(restConfig)
	clients = append(clients, err)
	ext, err = apiextensionsclientset.NewForConfig(restConfig)
	clients = append(clients, err)
	agg, err = aggregatorclientset.NewForConfig(restConfig)
	clients = append(clients, err)
	if err := errors.Join(clients...); err != nil {
		return nil, fmt.Errorf("building clients: %w", err)
	}
	c.Certs, err = certs.NewWithAPIServices(c.Kube, ext, agg, certs.Options{
		Namespace: o.Namespace, SecretName: o.SecretName, DNSNames: o.dnsNames, APIServices: []string{o.APIService},
	})
	if err != nil {
		return nil, err
	}

	g := genericapiserver.NewConfig(c.codecs)
	g.EffectiveVersion = compatibility.DefaultBuildEffectiveVersion()
	if err := o.SecureServing.ApplyTo(&g.SecureServing, &g.LoopbackClientConfig); err != nil {
		return nil, fmt.Errorf("serving: %w", err)
	}
	g.SecureServing.Cert = newServingCert(c.Certs.GetCertificate)
	// Names OpenAPI definitions by their served GroupVersionKind only: the types double
	// as their own internal version, which must not show in the published schema.
	named := runtime.NewScheme()
	if err := addServedTypes(named); err != nil {
		return nil, err
	}
	namer := openapinamer.NewDefinitionNamer(named)
	g.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(openapi.GetOpenAPIDefinitions, namer)
	g.OpenAPIConfig.Info.Title, g.OpenAPIConfig.Info.Version = "egressgw", v1alpha1.SchemeGroupVersion.Version
	g.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(openapi.GetOpenAPIDefinitions, namer)
	g.OpenAPIV3Config.Info.Title, g.OpenAPIV3Config.Info.Version = "egressgw", v1alpha1.SchemeGroupVersion.Version
	if err := o.Authentication.ApplyTo(&g.Authentication, g.SecureServing, g.OpenAPIConfig); err != nil {
		return nil, fmt.Errorf("delegated authentication: %w", err)
	}
	if err := o.Authorization.ApplyTo(&g.Authorization); err != nil {
		return nil, fmt.Errorf("delegated authorization: %w", err)
	}
	if err := o.Features.ApplyTo(g, c.Kube, nil); err != nil {
		return nil, err
	}
	g.AddReadyzChecks(
		healthz.NamedCheck("egress-views", func(*http.Request) error {
			if !c.Store.IsSynced() {
				return errors.New("the informer caches are still syncing")
			}
			return nil
		}),
		healthz.NamedCheck("serving-certificate", func(*http.Request) error { return c.Certs.Ready() }),
	)
	c.Generic = g
	return c, nil
}

// Complete fills in what the generic server derives.
func (c *Config) Complete() CompletedConfig {
	return CompletedConfig{&completedConfig{generic: c.Generic.Complete(nil), Config: c}}
}

// newScheme registers the served types, and the meta types every API server needs, in a
// scheme of the server's own: nothing global is changed.
func newScheme() (*runtime.Scheme, serializer.CodecFactory, error) {
	scheme := runtime.NewScheme()
	if err := install.Install(scheme); err != nil {
		return nil, serializer.CodecFactory{}, err
	}
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	scheme.AddUnversionedTypes(schema.GroupVersion{Version: "v1"},
		&metav1.Status{}, &metav1.APIVersions{}, &metav1.APIGroupList{}, &metav1.APIGroup{}, &metav1.APIResourceList{})
	return scheme, serializer.NewCodecFactory(scheme), nil
}

// addServedTypes registers the v1alpha1 types only, for naming OpenAPI definitions.
func addServedTypes(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(v1alpha1.SchemeGroupVersion,
		&v1alpha1.PodEgress{}, &v1alpha1.PodEgressList{},
		&v1alpha1.EgressPolicyView{}, &v1alpha1.EgressPolicyViewList{},
		&v1alpha1.EgressPreview{}, &v1alpha1.PreviewOptions{})
	return nil
}
