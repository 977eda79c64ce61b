// Package validation decides whether a networking.gke.io object may be written: every rule
// of the admission webhook, as pure functions that return a field.ErrorList with exact
// paths, the bad value, and, for conflicts, the other object. Warnings are for objects that
// are legal but will not work as the user expects.
//
// It never reads the API itself: everything it needs to know about other objects comes
// through Index, which the webhook backs with informer indexes. Nothing here may scan all
// objects of a kind.
package validation
