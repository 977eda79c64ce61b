package certs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsv1client "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset/typed/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	admissionregistrationv1client "k8s.io/client-go/kubernetes/typed/admissionregistration/v1"
	"k8s.io/klog/v2"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	apiregistrationv1client "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset/typed/apiregistration/v1"
)

// webhookClient reads and patches ValidatingWebhookConfigurations.
type webhookClient interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*admissionregistrationv1.ValidatingWebhookConfiguration, error)
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (*admissionregistrationv1.ValidatingWebhookConfiguration, error)
}

// crdClient reads and patches CustomResourceDefinitions.
type crdClient interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*apiextensionsv1.CustomResourceDefinition, error)
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (*apiextensionsv1.CustomResourceDefinition, error)
}

// apiServiceClient reads and patches APIServices.
type apiServiceClient interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*apiregistrationv1.APIService, error)
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (*apiregistrationv1.APIService, error)
}

var (
	_ webhookClient    = admissionregistrationv1client.ValidatingWebhookConfigurationInterface(nil)
	_ crdClient        = apiextensionsv1client.CustomResourceDefinitionInterface(nil)
	_ apiServiceClient = apiregistrationv1client.APIServiceInterface(nil)
)

// publisher writes the CA bundle to every object kube-apiserver reads it from.
type publisher struct {
	webhooks     webhookClient
	crds         crdClient
	webhookNames []string
	crdNames     []string
	// apiServices is nil unless apiServiceNames names any.
	apiServices     apiServiceClient
	apiServiceNames []string
}

// patchOp is one RFC 6902 operation.
type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// publish makes every target carry bundle, and reports whether any needed a patch. It
// goes on past a failing target so one missing object does not hold back the others.
func (p publisher) publish(ctx context.Context, bundle []byte) (bool, error) {
	var (
		patched bool
		errs    []error
	)
	for _, name := range p.webhookNames {
		did, err := p.publishWebhooks(ctx, name, bundle)
		patched = patched || did
		errs = append(errs, err)
	}
	for _, name := range p.crdNames {
		did, err := p.publishCRD(ctx, name, bundle)
		patched = patched || did
		errs = append(errs, err)
	}
	for _, name := range p.apiServiceNames {
		did, err := p.publishAPIService(ctx, name, bundle)
		patched = patched || did
		errs = append(errs, err)
	}
	return patched, errors.Join(errs...)
}

// publishWebhooks sets caBundle on every webhook of one configuration that lacks it. It
// patches with JSON Patch rather than Update: an Update from our typed client would drop
// fields a newer kube-apiserver knows and we do not. Each replace is guarded by a test of
// the webhook's name, so a concurrent reordering fails the patch instead of misplacing it.
func (p publisher) publishWebhooks(ctx context.Context, name string, bundle []byte) (bool, error) {
	config, err := p.webhooks.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false, fmt.Errorf("reading ValidatingWebhookConfiguration %s: %w", name, err)
	}
	var ops []patchOp
	for i, webhook := range config.Webhooks {
		if bytes.Equal(webhook.ClientConfig.CABundle, bundle) {
			continue
		}
		ops = append(ops,
			patchOp{Op: "test", Path: fmt.Sprintf("/webhooks/%d/name", i), Value: webhook.Name},
			patchOp{Op: "add", Path: fmt.Sprintf("/webhooks/%d/clientConfig/caBundle", i), Value: bundle},
		)
	}
	if len(ops) == 0 {
		return false, nil
	}
	if err := sendPatch(ctx, name, ops, p.webhooks.Patch); err != nil {
		return false, fmt.Errorf("publishing the CA bundle to ValidatingWebhookConfiguration %s: %w", name, err)
	}
	klog.InfoS("Published the webhook CA bundle", "validatingWebhookConfiguration", klog.KRef("", name), "webhooks", len(ops)/2)
	return true, nil
}

// publishCRD sets the conversion webhook's caBundle of one CRD. A CRD that does not
// convert through a webhook never calls us, so it is left alone.
func (p publisher) publishCRD(ctx context.Context, name string, bundle []byte) (bool, error) {
	crd, err := p.crds.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false, fmt.Errorf("reading CustomResourceDefinition %s: %w", name, err)
	}
	conversion := crd.Spec.Conversion
	if conversion == nil || conversion.Strategy != apiextensionsv1.WebhookConverter ||
		conversion.Webhook == nil || conversion.Webhook.ClientConfig == nil {
		klog.InfoS("CRD has no conversion webhook clientConfig; leaving its caBundle alone", "crd", klog.KRef("", name))
		return false, nil
	}
	if bytes.Equal(conversion.Webhook.ClientConfig.CABundle, bundle) {
		return false, nil
	}
	ops := []patchOp{
		{Op: "test", Path: "/spec/conversion/strategy", Value: apiextensionsv1.WebhookConverter},
		{Op: "add", Path: "/spec/conversion/webhook/clientConfig/caBundle", Value: bundle},
	}
	if err := sendPatch(ctx, name, ops, p.crds.Patch); err != nil {
		return false, fmt.Errorf("publishing the CA bundle to CustomResourceDefinition %s: %w", name, err)
	}
	klog.InfoS("Published the webhook CA bundle", "crd", klog.KRef("", name))
	return true, nil
}

// publishAPIService sets spec.caBundle of one APIService, which kube-apiserver's
// aggregator uses to verify the aggregated API server it proxies to. An APIService with
// insecureSkipTLSVerify cannot also carry a caBundle: kube-apiserver refuses the patch, and
// the error says which field to remove.
func (p publisher) publishAPIService(ctx context.Context, name string, bundle []byte) (bool, error) {
	svc, err := p.apiServices.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false, fmt.Errorf("reading APIService %s: %w", name, err)
	}
	if svc.Spec.Service == nil {
		klog.InfoS("APIService is served by kube-apiserver itself; leaving its caBundle alone", "apiService", klog.KRef("", name))
		return false, nil
	}
	if bytes.Equal(svc.Spec.CABundle, bundle) {
		return false, nil
	}
	ops := []patchOp{
		{Op: "test", Path: "/spec/service/name", Value: svc.Spec.Service.Name},
		{Op: "add", Path: "/spec/caBundle", Value: bundle},
	}
	if err := sendPatch(ctx, name, ops, p.apiServices.Patch); err != nil {
		return false, fmt.Errorf("publishing the CA bundle to APIService %s (it must not set insecureSkipTLSVerify): %w", name, err)
	}
	klog.InfoS("Published the CA bundle", "apiService", klog.KRef("", name))
	return true, nil
}

// patchFunc is the Patch method of a typed client.
type patchFunc[T any] func(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (T, error)

// sendPatch sends ops as one JSON patch through either client.
func sendPatch[T any](ctx context.Context, name string, ops []patchOp, send patchFunc[T]) error {
	body, err := json.Marshal(ops)
	if err != nil {
		return fmt.Errorf("encoding a JSON patch: %w", err)
	}
	_, err = send(ctx, name, types.JSONPatchType, body, metav1.PatchOptions{FieldManager: fieldManager})
	return err
}

// String names the targets, for errors.
func (p publisher) String() string {
	var targets []string
	for _, name := range p.webhookNames {
		targets = append(targets, "ValidatingWebhookConfiguration "+name)
	}
	for _, name := range p.crdNames {
		targets = append(targets, "CustomResourceDefinition "+name)
	}
	for _, name := range p.apiServiceNames {
		targets = append(targets, "APIService "+name)
	}
	return strings.Join(targets, ", ")
}
