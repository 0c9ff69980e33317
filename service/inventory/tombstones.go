package inventory

import "container/list"

// tombstones remember the mark (the last accepted sequence number) of peers
// that have gone, and the marks restored at start, so that a replay of their old datagrams is refused also after they
// left. At most max are kept; the oldest is forgotten first, in constant
// time, so that a flood of short-lived fake hosts cannot make each
// departure scan the table under the inventory's lock.
type tombstones struct {
	max   int
	order *list.List // host ids, the oldest at the front
	byID  map[string]tombstone
}

type tombstone struct {
	mark Mark
	elem *list.Element
}

func newTombstones(max int) *tombstones {
	return &tombstones{max: max, order: list.New(), byID: map[string]tombstone{}}
}

// get returns the mark remembered for a departed host.
func (t *tombstones) get(hostID string) (Mark, bool) {
	ts, ok := t.byID[hostID]
	return ts.mark, ok
}

// remember records a departed host's mark.
func (t *tombstones) remember(hostID string, mark Mark) {
	t.forget(hostID)
	if len(t.byID) >= t.max {
		oldest := t.order.Front()
		t.order.Remove(oldest)
		delete(t.byID, oldest.Value.(string))
	}
	t.byID[hostID] = tombstone{mark: mark, elem: t.order.PushBack(hostID)}
}

// forget drops a host that has come back.
func (t *tombstones) forget(hostID string) {
	if ts, ok := t.byID[hostID]; ok {
		t.order.Remove(ts.elem)
		delete(t.byID, hostID)
	}
}

func (t *tombstones) len() int { return len(t.byID) }

// each calls f for every tombstone, oldest first.
func (t *tombstones) each(f func(hostID string, m Mark)) {
	for e := t.order.Front(); e != nil; e = e.Next() {
		id := e.Value.(string)
		f(id, t.byID[id].mark)
	}
}
