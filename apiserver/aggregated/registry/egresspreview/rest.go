// Package egresspreview serves packet-path previews: egresspreviews, a create-only,
// review-style resource (POST a spec, read the path in status; nothing is stored), and
// the preview subresource of a PodEgress (GET with the packet in query parameters).
package egresspreview

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/egressgw/egressgw/apiserver/aggregated/preview"
	"github.com/egressgw/egressgw/apiserver/aggregated/registry/access"
	"github.com/egressgw/egressgw/apiserver/apis/egress/v1alpha1"
)

// Inputs snapshots what a preview reads; unknown pods are NotFound.
type Inputs interface {
	PreviewInput(namespace, name string, ip, dst netip.Addr) (preview.Input, error)
}

var resource = v1alpha1.Resource("egresspreviews")

// previewer runs previews for the users allowed to see the source pod.
type previewer struct {
	inputs Inputs
	authz  access.Authorizer
}

func (p previewer) run(ctx context.Context, req request, name string) (v1alpha1.EgressPreviewStatus, error) {
	start := time.Now()
	// With the namespace known, ask first: the answer must not tell an unauthorized user
	// whether a pod exists.
	if req.name != "" {
		if err := access.Pods(ctx, p.authz, req.namespace, resource, name); err != nil {
			return v1alpha1.EgressPreviewStatus{}, err
		}
	}
	in, err := p.inputs.PreviewInput(req.namespace, req.name, req.ip, req.pkt.Destination)
	if req.name == "" {
		// By IP, the namespace is known only once the pod is found. A user who may not get
		// that pod hears what he would hear if no pod had the IP: a Forbidden would tell him
		// that one does, and in which namespace.
		if apierrors.IsNotFound(err) {
			return v1alpha1.EgressPreviewStatus{}, noPodWithIP(req.ip)
		}
		if err == nil {
			if err := access.Pods(ctx, p.authz, in.Pod.Namespace, resource, name); apierrors.IsForbidden(err) {
				return v1alpha1.EgressPreviewStatus{}, noPodWithIP(req.ip)
			} else if err != nil {
				return v1alpha1.EgressPreviewStatus{}, err
			}
		}
	}
	if err != nil {
		return v1alpha1.EgressPreviewStatus{}, passThrough(err)
	}
	status := preview.Run(in, req.pkt)
	previewSeconds.WithLabelValues(string(status.Verdict)).Observe(time.Since(start).Seconds())
	return status, nil
}

// noPodWithIP is the one answer to a preview by IP of a pod that is not there, or that the
// user may not see.
func noPodWithIP(ip netip.Addr) error {
	err := apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, ip.String())
	err.ErrStatus.Message = fmt.Sprintf("no running pod you may get has IP %s (host-network pods share their node's IP: name them by namespace and name)", ip)
	return err
}

// REST is the storage of egresspreviews.
type REST struct {
	previewer
}

var (
	_ rest.Storage              = &REST{}
	_ rest.Scoper               = &REST{}
	_ rest.Creater              = &REST{}
	_ rest.SingularNameProvider = &REST{}
)

// NewREST previews with inputs, for users authz lets get the source pod.
func NewREST(inputs Inputs, authz access.Authorizer) *REST {
	return &REST{previewer{inputs: inputs, authz: authz}}
}

// New implements rest.Storage.
func (r *REST) New() runtime.Object { return &v1alpha1.EgressPreview{} }

// Destroy implements rest.Storage.
func (r *REST) Destroy() {}

// NamespaceScoped implements rest.Scoper: like a SubjectAccessReview, a preview is
// cluster-scoped; the source pod names its namespace, and access to it is checked.
func (r *REST) NamespaceScoped() bool { return false }

// GetSingularName implements rest.SingularNameProvider.
func (r *REST) GetSingularName() string { return "egresspreview" }

// Create implements rest.Creater: it answers in status and stores nothing.
func (r *REST) Create(ctx context.Context, obj runtime.Object, createValidation rest.ValidateObjectFunc, _ *metav1.CreateOptions) (runtime.Object, error) {
	in, ok := obj.(*v1alpha1.EgressPreview)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("not an EgressPreview: %T", obj))
	}
	req, errs := validateSpec(&in.Spec)
	if len(errs) > 0 {
		return nil, apierrors.NewInvalid(v1alpha1.Kind("EgressPreview"), in.Name, errs)
	}
	if createValidation != nil {
		if err := createValidation(ctx, obj); err != nil {
			return nil, err
		}
	}
	status, err := r.run(ctx, req, in.Name)
	if err != nil {
		return nil, err
	}
	out := in.DeepCopy()
	out.Status = status
	return out, nil
}

// PodREST is the preview subresource of podegresses:
// GET .../namespaces/NS/podegresses/POD/preview?destination=8.8.8.8&protocol=TCP&port=443
type PodREST struct {
	previewer
}

var (
	_ rest.Storage           = &PodREST{}
	_ rest.GetterWithOptions = &PodREST{}
)

// NewPodREST previews from a named pod.
func NewPodREST(inputs Inputs, authz access.Authorizer) *PodREST {
	return &PodREST{previewer{inputs: inputs, authz: authz}}
}

// New implements rest.Storage.
func (r *PodREST) New() runtime.Object { return &v1alpha1.EgressPreview{} }

// Destroy implements rest.Storage.
func (r *PodREST) Destroy() {}

// NewGetOptions implements rest.GetterWithOptions: the packet comes in query parameters.
func (r *PodREST) NewGetOptions() (runtime.Object, bool, string) {
	return &v1alpha1.PreviewOptions{}, false, ""
}

// Get implements rest.GetterWithOptions.
func (r *PodREST) Get(ctx context.Context, name string, opts runtime.Object) (runtime.Object, error) {
	o, ok := opts.(*v1alpha1.PreviewOptions)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("not PreviewOptions: %T", opts))
	}
	pkt, errs := validatePacket(o.Destination, v1alpha1.Protocol(o.Protocol), o.Port, nil)
	if len(errs) > 0 {
		return nil, apierrors.NewBadRequest(errs.ToAggregate().Error())
	}
	namespace := genericapirequest.NamespaceValue(ctx)
	status, err := r.run(ctx, request{namespace: namespace, name: name, pkt: pkt}, name)
	if err != nil {
		return nil, err
	}
	return &v1alpha1.EgressPreview{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.EgressPreviewSpec{
			Source:      v1alpha1.PreviewSource{Namespace: namespace, Name: name},
			Destination: o.Destination, Protocol: v1alpha1.Protocol(pkt.Protocol), Port: o.Port,
		},
		Status: status,
	}, nil
}

func passThrough(err error) error {
	if _, ok := err.(apierrors.APIStatus); ok || err == nil {
		return err
	}
	return apierrors.NewInternalError(fmt.Errorf("reading the caches for a preview: %w", err))
}
