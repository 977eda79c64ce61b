package nodeagent

import (
	"errors"
	"strings"

	"github.com/egressgw/egressgw/apiserver/routing"
)

// A full map or id space is not a failed pass: what does not fit is refused and fails
// closed, the rest is programmed, and the pass goes on to the report and the grants. The
// agent says so in its NetworkGatewayNode's CapacityExceeded condition, and is not ready
// until it fits again.

// ConditionCapacityExceeded is the NetworkGatewayNode condition that is True while a map
// or an id space of the node's dataplane refuses entries; its message names each one,
// its limit, and what it refused.
const ConditionCapacityExceeded = "CapacityExceeded"

// splitCapacity parts a pass's errors into the maps and id spaces that refused entries,
// and the rest.
func splitCapacity(errs []error) (others []error, full []*routing.CapacityError) {
	for _, err := range errs {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			o, f := splitCapacity(j.Unwrap())
			others, full = append(others, o...), append(full, f...)
			continue
		}
		var ce *routing.CapacityError
		if errors.As(err, &ce) {
			full = append(full, ce)
			continue
		}
		others = append(others, err)
	}
	return others, full
}

// capacityMessage is the CapacityExceeded condition's message: empty when all fits.
func capacityMessage(full []*routing.CapacityError) string {
	msgs := make([]string, len(full))
	for i, ce := range full {
		msgs[i] = ce.Error()
	}
	return strings.Join(msgs, "; ")
}
