package validation

import (
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/randfill"

	v1 "github.com/egressgw/egressgw/apiserver/apis/networking/v1"
	"github.com/egressgw/egressgw/apiserver/apis/networking/v1alpha1"
)

// FuzzValidators feeds random objects to every validator: none may panic, and every denial
// must carry a field path.
func FuzzValidators(f *testing.F) {
	for seed := range int64(100) {
		f.Add(seed, "192.168.1.100", "8.8.8.0/24")
	}
	f.Add(int64(1), "2001:db8::1", "::/0")
	f.Add(int64(2), "", "")
	f.Add(int64(3), "1.2.3.4/32", "8.8.8.8/33")
	f.Fuzz(func(t *testing.T, seed int64, ip, cidr string) {
		filler := randfill.NewWithSeed(seed).NilChance(0.3).NumElements(0, 4)
		idx := specCluster()
		withPaths := func(what string, errs field.ErrorList) {
			for _, e := range errs {
				if e.Field == "" || e.Type == "" {
					t.Errorf("%s: error without a field path or type: %v", what, e)
				}
			}
		}

		var gateway, oldGateway v1.NetworkGatewayGroupSpec
		filler.Fill(&gateway)
		filler.Fill(&oldGateway)
		gateway.FloatingIPs = append(gateway.FloatingIPs, ip)
		errs, _ := Gateway(gw("fuzz"), &gateway, &oldGateway, idx)
		withPaths("Gateway", errs)
		errs, _ = Gateway(gw("fuzz"), &gateway, nil, idx)
		withPaths("Gateway create", errs)
		GatewayDelete(gw("gateway1"), &gateway, idx)

		var p, old v1.EgressNATPolicy
		filler.Fill(&p)
		filler.Fill(&old)
		p.Spec.Destinations = append(p.Spec.Destinations, v1.Destination{CIDR: cidr})
		errs, _ = Policy(&p, &old, idx)
		withPaths("Policy", errs)
		errs, _ = Policy(&p, nil, idx)
		withPaths("Policy create", errs)

		var lp, lold v1alpha1.EgressNATPolicy
		filler.Fill(&lp)
		filler.Fill(&lold)
		lp.Spec.EgressSourceIP = ip
		lp.Spec.DestinationCIDRs = append(lp.Spec.DestinationCIDRs, cidr)
		errs, _ = LegacyPolicy(&lp, &lold, idx)
		withPaths("LegacyPolicy", errs)
	})
}
