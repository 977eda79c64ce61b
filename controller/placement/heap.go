package placement

// entry is one candidate node in a pool's heap.
type entry struct {
	idx          int32 // position in index.nodes, which is name order
	load         int32 // the node's load when the entry was last refreshed
	controlPlane bool
}

// better is the placement preference: workers first, then fewer IPs, then name.
func (a entry) better(b entry) bool {
	if a.controlPlane != b.controlPlane {
		return !a.controlPlane
	}
	if a.load != b.load {
		return a.load < b.load
	}
	return a.idx < b.idx
}

// heap is a binary min-heap of entries. It is written out rather than using container/heap
// because that boxes every entry in an interface, which costs an allocation per push.
type heap []entry

func (h heap) init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

// down restores the heap after h[i] got worse.
func (h heap) down(i int) {
	for {
		best := i
		if l := 2*i + 1; l < len(h) && h[l].better(h[best]) {
			best = l
		}
		if r := 2*i + 2; r < len(h) && h[r].better(h[best]) {
			best = r
		}
		if best == i {
			return
		}
		h[i], h[best] = h[best], h[i]
		i = best
	}
}
