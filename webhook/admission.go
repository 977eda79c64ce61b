package webhook

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/apiserver/apis/networking/v1alpha1"
	"github.com/egressgw/egressgw/webhook/validation"
)

// The validators are thin typed adapters over package validation: they look up nothing
// themselves, and turn its field.ErrorList into a 422 Invalid status.
var (
	_ admission.Validator[*v1.NetworkGatewayGroup]        = &gatewayValidator[*v1.NetworkGatewayGroup]{}
	_ admission.Validator[*v1alpha1.AnthosNetworkGateway] = &gatewayValidator[*v1alpha1.AnthosNetworkGateway]{}
	_ admission.Validator[*v1.EgressNATPolicy]            = &policyValidator[*v1.EgressNATPolicy]{}
	_ admission.Validator[*v1alpha1.EgressNATPolicy]      = &policyValidator[*v1alpha1.EgressNATPolicy]{}
)

// answer turns what a validator said into the webhook's answer. A failed lookup is the
// server's fault, not the user's: it is an internal error, and the write is refused.
func answer(gk schema.GroupKind, name string, idx *requestIndex, errs field.ErrorList, warnings []string) (admission.Warnings, error) {
	if idx.err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("looking up other objects: %w", idx.err))
	}
	if len(errs) > 0 {
		return warnings, apierrors.NewInvalid(gk, name, errs)
	}
	return warnings, nil
}

// gatewayValidator validates either kind of gateway; both share one spec type.
type gatewayValidator[T client.Object] struct {
	reader  client.Reader
	subnets *subnetSet
	kind    string
	spec    func(T) *v1.NetworkGatewayGroupSpec
}

func newGatewayValidator(reader client.Reader, subnets *subnetSet) *gatewayValidator[*v1.NetworkGatewayGroup] {
	return &gatewayValidator[*v1.NetworkGatewayGroup]{reader: reader, subnets: subnets, kind: validation.KindNetworkGatewayGroup,
		spec: func(g *v1.NetworkGatewayGroup) *v1.NetworkGatewayGroupSpec { return &g.Spec }}
}

func newLegacyGatewayValidator(reader client.Reader, subnets *subnetSet) *gatewayValidator[*v1alpha1.AnthosNetworkGateway] {
	return &gatewayValidator[*v1alpha1.AnthosNetworkGateway]{reader: reader, subnets: subnets, kind: validation.KindAnthosNetworkGateway,
		spec: func(g *v1alpha1.AnthosNetworkGateway) *v1.NetworkGatewayGroupSpec { return &g.Spec }}
}

func (v *gatewayValidator[T]) ValidateCreate(ctx context.Context, obj T) (admission.Warnings, error) {
	return v.validate(ctx, obj, nil)
}

func (v *gatewayValidator[T]) ValidateUpdate(ctx context.Context, old, obj T) (admission.Warnings, error) {
	return v.validate(ctx, obj, v.spec(old))
}

// ValidateDelete allows every deletion, with warnings naming the policies it breaks.
func (v *gatewayValidator[T]) ValidateDelete(ctx context.Context, obj T) (admission.Warnings, error) {
	idx := newRequestIndex(ctx, v.reader, v.subnets)
	warnings := validation.GatewayDelete(v.ref(obj), v.spec(obj), idx)
	return answer(v1.Kind(v.kind), obj.GetName(), idx, nil, warnings)
}

func (v *gatewayValidator[T]) validate(ctx context.Context, obj T, old *v1.NetworkGatewayGroupSpec) (admission.Warnings, error) {
	idx := newRequestIndex(ctx, v.reader, v.subnets)
	errs, warnings := validation.Gateway(v.ref(obj), v.spec(obj), old, idx)
	return answer(v1.Kind(v.kind), obj.GetName(), idx, errs, warnings)
}

func (v *gatewayValidator[T]) ref(obj T) validation.ObjectRef {
	return validation.ObjectRef{Kind: v.kind, Namespace: obj.GetNamespace(), Name: obj.GetName()}
}

// policyValidator validates either version of EgressNATPolicy with that version's rules.
type policyValidator[T client.Object] struct {
	reader  client.Reader
	subnets *subnetSet
	gk      schema.GroupKind
	rules   func(obj, old T, idx validation.Index) (field.ErrorList, []string)
}

func newPolicyValidator(reader client.Reader, subnets *subnetSet) *policyValidator[*v1.EgressNATPolicy] {
	return &policyValidator[*v1.EgressNATPolicy]{reader: reader, subnets: subnets, gk: v1.Kind("EgressNATPolicy"), rules: validation.Policy}
}

func newLegacyPolicyValidator(reader client.Reader, subnets *subnetSet) *policyValidator[*v1alpha1.EgressNATPolicy] {
	return &policyValidator[*v1alpha1.EgressNATPolicy]{reader: reader, subnets: subnets, gk: v1alpha1.Kind("EgressNATPolicy"), rules: validation.LegacyPolicy}
}

func (v *policyValidator[T]) ValidateCreate(ctx context.Context, obj T) (admission.Warnings, error) {
	var none T // a nil pointer: nothing was there before
	return v.validate(ctx, obj, none)
}

func (v *policyValidator[T]) ValidateUpdate(ctx context.Context, old, obj T) (admission.Warnings, error) {
	return v.validate(ctx, obj, old)
}

// ValidateDelete allows every deletion: nothing refers to a policy.
func (v *policyValidator[T]) ValidateDelete(context.Context, T) (admission.Warnings, error) {
	return nil, nil
}

func (v *policyValidator[T]) validate(ctx context.Context, obj, old T) (admission.Warnings, error) {
	idx := newRequestIndex(ctx, v.reader, v.subnets)
	errs, warnings := v.rules(obj, old, idx)
	return answer(v.gk, obj.GetName(), idx, errs, warnings)
}
