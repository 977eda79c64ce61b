// Package egresspolicyview serves egresspolicyviews: one read-only view per
// EgressNATPolicy of where its traffic leaves, and its pods subresource, the PodEgress of
// every pod the policy selects now.
package egresspolicyview

import (
	"context"
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/apiserver/pkg/warning"

	"github.com/egressgw/egressgw/apiserver/aggregated/registry/access"
	"github.com/egressgw/egressgw/apiserver/aggregated/registry/podegress"
	"github.com/egressgw/egressgw/apiserver/apis/egress/v1alpha1"
)

// Views is what the storage reads the views from.
type Views interface {
	PolicyView(name string) (*v1alpha1.EgressPolicyView, error)
	PolicyViews() (*v1alpha1.EgressPolicyViewList, error)
	PolicyPods(name string) (*v1alpha1.PodEgressList, error)
	PolicyPodsByNamespace(name string) (map[string]int32, error)
}

var resource = v1alpha1.Resource("egresspolicyviews")

// REST is the storage of egresspolicyviews. Like EgressNATPolicies, they are
// cluster-scoped: RBAC on egresspolicyviews decides who reads them. Their selectedPods
// counts only the pods in namespaces where the user may get pods, as the pods
// subresource lists only those.
type REST struct {
	views Views
	authz access.Authorizer
}

var (
	_ rest.Storage              = &REST{}
	_ rest.Scoper               = &REST{}
	_ rest.Getter               = &REST{}
	_ rest.Lister               = &REST{}
	_ rest.TableConvertor       = &REST{}
	_ rest.SingularNameProvider = &REST{}
	_ rest.ShortNamesProvider   = &REST{}
	_ rest.CategoriesProvider   = &REST{}
)

// NewREST serves the views of policies, with counts of the pods authz lets the user get.
func NewREST(views Views, authz access.Authorizer) *REST { return &REST{views: views, authz: authz} }

// New implements rest.Storage.
func (r *REST) New() runtime.Object { return &v1alpha1.EgressPolicyView{} }

// Destroy implements rest.Storage.
func (r *REST) Destroy() {}

// NamespaceScoped implements rest.Scoper.
func (r *REST) NamespaceScoped() bool { return false }

// GetSingularName implements rest.SingularNameProvider.
func (r *REST) GetSingularName() string { return "egresspolicyview" }

// ShortNames implements rest.ShortNamesProvider.
func (r *REST) ShortNames() []string { return []string{"epv"} }

// Categories implements rest.CategoriesProvider.
func (r *REST) Categories() []string { return []string{"egressnat"} }

// NewList implements rest.Lister.
func (r *REST) NewList() runtime.Object { return &v1alpha1.EgressPolicyViewList{} }

// Get implements rest.Getter.
func (r *REST) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	v, err := r.views.PolicyView(name)
	if err != nil {
		return nil, passThrough(err)
	}
	if err := r.countVisible(ctx, []*v1alpha1.EgressPolicyView{v}); err != nil {
		return nil, err
	}
	return v, nil
}

// List implements rest.Lister, with label selectors on the policies' labels and the field
// selectors of v1alpha1.EgressPolicyViewFields.
func (r *REST) List(ctx context.Context, opts *metainternalversion.ListOptions) (runtime.Object, error) {
	list, err := r.views.PolicyViews()
	if err != nil {
		return nil, passThrough(err)
	}
	label, field := labels.Everything(), fields.Everything()
	if opts != nil && opts.LabelSelector != nil {
		label = opts.LabelSelector
	}
	if opts != nil && opts.FieldSelector != nil {
		field = opts.FieldSelector
	}
	list.Items = slices.DeleteFunc(list.Items, func(v v1alpha1.EgressPolicyView) bool {
		return !label.Matches(labels.Set(v.Labels)) || !field.Matches(v1alpha1.EgressPolicyViewFields(&v))
	})
	items := make([]*v1alpha1.EgressPolicyView, len(list.Items))
	for i := range list.Items {
		items[i] = &list.Items[i]
	}
	if err := r.countVisible(ctx, items); err != nil {
		return nil, err
	}
	return list, nil
}

// countVisible sets each view's selectedPods to the pods in namespaces where the user may
// get pods. A user who may get pods everywhere keeps the Store's count; anyone else is
// told, whatever the policies select, that the counts are of the pods they may see, so
// the warning itself says nothing about the other namespaces.
func (r *REST) countVisible(ctx context.Context, views []*v1alpha1.EgressPolicyView) error {
	if access.Pods(ctx, r.authz, "", resource, "") == nil {
		return nil
	}
	allowed := access.NewCache(ctx, r.authz, resource)
	for _, v := range views {
		counts, err := r.views.PolicyPodsByNamespace(v.Name)
		if apierrors.IsNotFound(err) { // Deleted since the view was read.
			counts, err = nil, nil
		}
		if err != nil {
			return passThrough(err)
		}
		v.SelectedPods = 0
		for ns, n := range counts {
			if allowed.Allowed(ns) {
				v.SelectedPods += n
			}
		}
	}
	warning.AddWarning(ctx, "", onlyVisible)
	return nil
}

// onlyVisible is the warning of a user who may not get pods in every namespace.
const onlyVisible = "selectedPods counts only the pods in namespaces where you may get pods"

// ConvertToTable implements rest.TableConvertor.
func (r *REST) ConvertToTable(_ context.Context, obj runtime.Object, _ runtime.Object) (*metav1.Table, error) {
	return table(obj)
}

// PodsREST is the pods subresource: the views of the pods a policy selects, limited to the
// namespaces whose pods the user may get. A user who may not get pods everywhere is
// warned that the list is limited, never of what was left out.
type PodsREST struct {
	views Views
	authz access.Authorizer
	podegress.TableConvertor
}

var (
	_ rest.Storage        = &PodsREST{}
	_ rest.Getter         = &PodsREST{}
	_ rest.TableConvertor = &PodsREST{}
)

// NewPodsREST serves the pods subresource.
func NewPodsREST(views Views, authz access.Authorizer) *PodsREST {
	return &PodsREST{views: views, authz: authz}
}

// New implements rest.Storage.
func (r *PodsREST) New() runtime.Object { return &v1alpha1.PodEgressList{} }

// Destroy implements rest.Storage.
func (r *PodsREST) Destroy() {}

// Get implements rest.Getter.
func (r *PodsREST) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	list, err := r.views.PolicyPods(name)
	if err != nil {
		return nil, passThrough(err)
	}
	if access.Pods(ctx, r.authz, "", resource, "") == nil {
		return list, nil
	}
	allowed := access.NewCache(ctx, r.authz, resource)
	list.Items = slices.DeleteFunc(list.Items, func(v v1alpha1.PodEgress) bool { return !allowed.Allowed(v.Namespace) })
	// Said to every user who may not get pods everywhere, whatever was left out: how many
	// pods the policy selects elsewhere, and where, is not theirs to know.
	warning.AddWarning(ctx, "", "only the pods in namespaces where you may get pods are listed")
	return list, nil
}

func passThrough(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(apierrors.APIStatus); ok {
		return err
	}
	return apierrors.NewInternalError(fmt.Errorf("reading the views: %w", err))
}
