package inventory

import "container/list"

// tombstones remember the last accepted sequence number of peers that have
// gone, so that a replay of their old datagrams is refused also after they
// left. At most max are kept; the oldest is forgotten first, in constant
// time, so that a flood of short-lived fake hosts cannot make each
// departure scan the table under the inventory's lock.
type tombstones struct {
	max   int
	order *list.List // host ids, the oldest at the front
	byID  map[string]tombstone
}

type tombstone struct {
	seq  uint64
	elem *list.Element
}

func newTombstones(max int) *tombstones {
	return &tombstones{max: max, order: list.New(), byID: map[string]tombstone{}}
}

// get returns the last sequence number remembered for a departed host.
func (t *tombstones) get(hostID string) (uint64, bool) {
	ts, ok := t.byID[hostID]
	return ts.seq, ok
}

// remember records a departed host's last sequence number.
func (t *tombstones) remember(hostID string, seq uint64) {
	t.forget(hostID)
	if len(t.byID) >= t.max {
		oldest := t.order.Front()
		t.order.Remove(oldest)
		delete(t.byID, oldest.Value.(string))
	}
	t.byID[hostID] = tombstone{seq: seq, elem: t.order.PushBack(hostID)}
}

// forget drops a host that has come back.
func (t *tombstones) forget(hostID string) {
	if ts, ok := t.byID[hostID]; ok {
		t.order.Remove(ts.elem)
		delete(t.byID, hostID)
	}
}

func (t *tombstones) len() int { return len(t.byID) }

// Mark is a peer's highest accepted sequence number, as diskd remembers it
// across its own restarts.
type Mark struct {
	HostID string
	Seq    uint64
}

// RestoreMarks makes the inventory refuse, from each host, announcements
// whose sequence number does not exceed its mark, as if the host had left
// after sending it: a restarted daemon keeps refusing datagrams it had
// already accepted before. A host that is live now, or whose remembered
// sequence is higher, keeps what the inventory has.
func (inv *Inventory) RestoreMarks(marks ...Mark) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	for _, m := range marks {
		if m.HostID == "" || m.HostID == inv.opts.HostID {
			continue
		}
		if _, live := inv.peers[m.HostID]; live {
			continue
		}
		if seq, ok := inv.tombs.get(m.HostID); ok && seq >= m.Seq {
			continue
		}
		inv.tombs.remember(m.HostID, m.Seq)
	}
}
