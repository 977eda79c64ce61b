package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/egressgw/egressgw/apiserver/apis/egress"
)

// SchemeGroupVersion is the group and version of every type in this package.
var SchemeGroupVersion = schema.GroupVersion{Group: egress.GroupName, Version: "v1alpha1"}

// InternalGroupVersion is the version the server decodes into. The types have no separate
// internal form: they are registered as it too, so every conversion is a copy.
var InternalGroupVersion = schema.GroupVersion{Group: egress.GroupName, Version: runtime.APIVersionInternal}

var (
	// SchemeBuilder collects the functions that add this package's types to a scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes, addConversionFuncs, addFieldLabelConversions)
	// AddToScheme adds this package's types, as v1alpha1 and as the internal version, to a
	// scheme the caller owns.
	AddToScheme = SchemeBuilder.AddToScheme
)

// Resource turns a resource name into a GroupResource of this group.
func Resource(resource string) schema.GroupResource {
	return SchemeGroupVersion.WithResource(resource).GroupResource()
}

// Kind turns a kind into a GroupKind of this group.
func Kind(kind string) schema.GroupKind {
	return SchemeGroupVersion.WithKind(kind).GroupKind()
}

func addKnownTypes(scheme *runtime.Scheme) error {
	types := []runtime.Object{
		&PodEgress{}, &PodEgressList{},
		&EgressPolicyView{}, &EgressPolicyViewList{},
		&EgressPreview{}, &PreviewOptions{},
	}
	scheme.AddKnownTypes(SchemeGroupVersion, types...)
	scheme.AddKnownTypes(InternalGroupVersion, types...)
	metav1.AddToGroupVersion(scheme, SchemeGroupVersion)
	return nil
}
