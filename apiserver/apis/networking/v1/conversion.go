package v1

// Hub marks EgressNATPolicy v1 as the version every other version converts through.
func (*EgressNATPolicy) Hub() {}
