package store

import "container/heap"

// ageItem is one record in an ageIndex.
type ageItem struct {
	key string
	t   int64 // last seen or last heard, unix nanoseconds
	i   int   // position in the heap
}

// ageIndex orders records by time, oldest first, so that retention finds
// the oldest record in O(1) and removes it in O(log n).
type ageIndex struct{ h ageHeap }

type ageHeap []*ageItem

func (h ageHeap) Len() int { return len(h) }
func (h ageHeap) Less(a, b int) bool {
	if h[a].t != h[b].t {
		return h[a].t < h[b].t
	}
	return h[a].key < h[b].key
}
func (h ageHeap) Swap(a, b int) {
	h[a], h[b] = h[b], h[a]
	h[a].i = a
	h[b].i = b
}
func (h *ageHeap) Push(x any) {
	it := x.(*ageItem)
	it.i = len(*h)
	*h = append(*h, it)
}
func (h *ageHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	it.i = -1
	return it
}

func (x *ageIndex) add(key string, t int64) *ageItem {
	it := &ageItem{key: key, t: t}
	heap.Push(&x.h, it)
	return it
}

func (x *ageIndex) update(it *ageItem, t int64) {
	if it.t == t {
		return
	}
	it.t = t
	heap.Fix(&x.h, it.i)
}

func (x *ageIndex) remove(it *ageItem) { heap.Remove(&x.h, it.i) }

// oldest returns the oldest item, or nil.
func (x *ageIndex) oldest() *ageItem {
	if len(x.h) == 0 {
		return nil
	}
	return x.h[0]
}
