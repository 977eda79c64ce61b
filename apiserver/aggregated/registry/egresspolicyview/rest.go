// Package egresspolicyview serves egresspolicyviews: one read-only view per
// EgressNATPolicy of where its traffic leaves, and its pods subresource, the PodEgress of
// every pod the policy selects now.
package egresspolicyview

import (
	"context"
	"fmt"
	"slices"
	"strings"

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
}

var resource = v1alpha1.Resource("egresspolicyviews")

// REST is the storage of egresspolicyviews. Like EgressNATPolicies, they are
// cluster-scoped: RBAC on egresspolicyviews decides who reads them.
type REST struct {
	views Views
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

// NewREST serves the views of policies.
func NewREST(views Views) *REST { return &REST{views: views} }

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
func (r *REST) Get(_ context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	v, err := r.views.PolicyView(name)
	return v, passThrough(err)
}

// List implements rest.Lister, with label selectors on the policies' labels and the field
// selectors of v1alpha1.EgressPolicyViewFields.
func (r *REST) List(_ context.Context, opts *metainternalversion.ListOptions) (runtime.Object, error) {
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
	return list, nil
}

// ConvertToTable implements rest.TableConvertor.
func (r *REST) ConvertToTable(_ context.Context, obj runtime.Object, _ runtime.Object) (*metav1.Table, error) {
	return table(obj)
}

// PodsREST is the pods subresource: the views of the pods a policy selects, limited to the
// namespaces whose pods the user may get. A warning says how many were left out.
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
	allowed := access.NewCache(ctx, r.authz, resource)
	hidden := map[string]int{}
	list.Items = slices.DeleteFunc(list.Items, func(v v1alpha1.PodEgress) bool {
		if allowed.Allowed(v.Namespace) {
			return false
		}
		hidden[v.Namespace]++
		return true
	})
	if len(hidden) > 0 {
		var namespaces []string
		total := 0
		for ns, n := range hidden {
			namespaces, total = append(namespaces, ns), total+n
		}
		slices.Sort(namespaces)
		warning.AddWarning(ctx, "", fmt.Sprintf("%d pods left out: you may not get pods in the namespaces %s", total, strings.Join(namespaces, ", ")))
	}
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
