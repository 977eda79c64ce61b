// Package watchlimit decides how many watches one user may hold open on the server. A
// watch costs the server a goroutine, a queue and a copy of its initial list, so without a
// bound one user could hold enough of them to run the server out of memory. It must never
// let a refused watch take a slot, nor let an ended watch keep one.
package watchlimit
