// Package podegress serves podegresses: one read-only view per pod of how its traffic
// leaves the cluster, with get, list and watch.
package podegress

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/egressgw/egressgw/apiserver/aggregated/registry/access"
	"github.com/egressgw/egressgw/apiserver/aggregated/registry/watchlimit"
	"github.com/egressgw/egressgw/apiserver/aggregated/view"
	"github.com/egressgw/egressgw/apiserver/apis/egress/v1alpha1"
)

// Views is what the storage reads the views from.
type Views interface {
	PodEgress(namespace, name string) (*v1alpha1.PodEgress, error)
	PodEgresses(namespace string, match view.Matcher) (*v1alpha1.PodEgressList, error)
	WatchPodEgresses(namespace string, opts view.WatchOptions, match view.Matcher) (watch.Interface, error)
}

// REST is the storage of podegresses.
type REST struct {
	views   Views
	authz   access.Authorizer
	watches *watchlimit.Limiter
	TableConvertor
}

var (
	_ rest.Storage              = &REST{}
	_ rest.Scoper               = &REST{}
	_ rest.Getter               = &REST{}
	_ rest.Lister               = &REST{}
	_ rest.Watcher              = &REST{}
	_ rest.TableConvertor       = &REST{}
	_ rest.SingularNameProvider = &REST{}
	_ rest.ShortNamesProvider   = &REST{}
	_ rest.CategoriesProvider   = &REST{}
)

// NewREST serves views, to users authz lets get the pods they describe, with no more
// watches open per user than watches allows.
func NewREST(views Views, authz access.Authorizer, watches *watchlimit.Limiter) *REST {
	return &REST{views: views, authz: authz, watches: watches}
}

var resource = v1alpha1.Resource("podegresses")

// New implements rest.Storage.
func (r *REST) New() runtime.Object { return &v1alpha1.PodEgress{} }

// Destroy implements rest.Storage. Nothing to release: the views belong to the server.
func (r *REST) Destroy() {}

// NamespaceScoped implements rest.Scoper: a view lives in its pod's namespace.
func (r *REST) NamespaceScoped() bool { return true }

// GetSingularName implements rest.SingularNameProvider.
func (r *REST) GetSingularName() string { return "podegress" }

// ShortNames implements rest.ShortNamesProvider.
func (r *REST) ShortNames() []string { return []string{"pe"} }

// Categories implements rest.CategoriesProvider: kubectl get egressnat shows them too.
func (r *REST) Categories() []string { return []string{"egressnat"} }

// NewList implements rest.Lister.
func (r *REST) NewList() runtime.Object { return &v1alpha1.PodEgressList{} }

// Get implements rest.Getter.
func (r *REST) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	namespace := genericapirequest.NamespaceValue(ctx)
	if err := access.Pods(ctx, r.authz, namespace, resource, name); err != nil {
		return nil, err
	}
	v, err := r.views.PodEgress(namespace, name)
	return v, passThrough(err)
}

// List implements rest.Lister, with label selectors on the pods' labels and the field
// selectors of v1alpha1.PodEgressFields.
func (r *REST) List(ctx context.Context, opts *metainternalversion.ListOptions) (runtime.Object, error) {
	namespace := genericapirequest.NamespaceValue(ctx)
	if err := access.Pods(ctx, r.authz, namespace, resource, ""); err != nil {
		return nil, err
	}
	list, err := r.views.PodEgresses(namespace, Matcher(opts))
	return list, passThrough(err)
}

// Watch implements rest.Watcher, from a resourceVersion a list returned. A user who
// already holds the most watches allowed is refused with 429 before anything is copied.
func (r *REST) Watch(ctx context.Context, opts *metainternalversion.ListOptions) (watch.Interface, error) {
	namespace := genericapirequest.NamespaceValue(ctx)
	if err := access.Pods(ctx, r.authz, namespace, resource, ""); err != nil {
		return nil, err
	}
	return r.watches.Watch(ctx, func() (watch.Interface, error) {
		w, err := r.views.WatchPodEgresses(namespace, view.WatchOptions{
			ResourceVersion:   opts.ResourceVersion,
			SendInitialEvents: opts.SendInitialEvents != nil && *opts.SendInitialEvents,
			Bookmarks:         opts.AllowWatchBookmarks,
		}, Matcher(opts))
		return w, passThrough(err)
	})
}

// Matcher selects the views a list or watch asked for.
func Matcher(opts *metainternalversion.ListOptions) view.Matcher {
	label, field := labels.Everything(), fields.Everything()
	if opts != nil && opts.LabelSelector != nil {
		label = opts.LabelSelector
	}
	if opts != nil && opts.FieldSelector != nil {
		field = opts.FieldSelector
	}
	if label.Empty() && field.Empty() {
		return nil
	}
	return func(v *v1alpha1.PodEgress) bool {
		return label.Matches(labels.Set(v.Labels)) && field.Matches(v1alpha1.PodEgressFields(v))
	}
}

// passThrough returns API errors (NotFound, ServiceUnavailable) as they are, and wraps
// anything else as an internal error.
func passThrough(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(apierrors.APIStatus); ok {
		return err
	}
	return apierrors.NewInternalError(fmt.Errorf("reading the views: %w", err))
}
