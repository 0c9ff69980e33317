package dbusapi

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/inventory"
)

// Defaults of the reply cache.
const (
	// defaultReplyMaxAge bounds how old a cached reply may be: the
	// inventory sends no event when a peer is merely heard again, so
	// last_seen and last_heard move without one.
	defaultReplyMaxAge = time.Second
	// defaultBusyWait is how long a call waits for a reply being built
	// before it answers ErrorBusy.
	defaultBusyWait = 10 * time.Second
)

// replies builds each answer of List, ListTable, Find and Peers at most
// once per inventory change (or per replyMaxAge), and hands the same
// immutable values to every call: however many calls are in flight, the
// daemon holds one copy of each reply. godbus marshals replies one at a
// time (under its connection's send lock), so what a call in flight costs
// on top is its message being encoded, not a reply of its own.
type replies struct {
	inv    *inventory.Inventory
	maxAge time.Duration
	wait   time.Duration

	gen   atomic.Uint64 // bumped by invalidate
	build chan struct{} // a one-slot semaphore: who builds (or reads) the cache

	// Guarded by build.
	snap *snapshot
}

// snapshot is the inventory at one moment and the replies made from it,
// each built when first asked for.
type snapshot struct {
	gen   uint64
	at    time.Time
	disks []diskstate.Disk
	dicts []map[string]dbus.Variant // List; nil until asked for
	table string                    // ListTable; "" until asked for
	index map[diskKey]int           // disk to its position, for Find
	peers []map[string]dbus.Variant // Peers; nil until asked for
}

type diskKey struct{ host, device, uuid string }

func keyOf(d *diskstate.Disk) diskKey { return diskKey{d.HostID, d.Device, d.UUID} }

func newReplies(inv *inventory.Inventory) *replies {
	return &replies{inv: inv, maxAge: defaultReplyMaxAge, wait: defaultBusyWait, build: make(chan struct{}, 1)}
}

// invalidate makes the next call build its reply anew (the inventory
// changed).
func (r *replies) invalidate() { r.gen.Add(1) }

// errBusy is the answer to a call that waited too long for its reply.
func errBusy(wait time.Duration) *dbus.Error {
	return dbus.NewError(ErrorBusy, []any{"diskd is busy answering other calls (none could be served within " +
		wait.String() + "); try again"})
}

// with runs f on a current snapshot, building one when the cached one is
// stale. Callers wait for each other up to r.wait (or ctx), then get
// ErrorBusy.
func (r *replies) with(ctx context.Context, f func(s *snapshot)) *dbus.Error {
	t := time.NewTimer(r.wait)
	defer t.Stop()
	select {
	case r.build <- struct{}{}:
	case <-t.C:
		return errBusy(r.wait)
	case <-ctx.Done():
		return errClosing()
	}
	defer func() { <-r.build }()
	gen := r.gen.Load()
	if s := r.snap; s == nil || s.gen != gen || time.Since(s.at) > r.maxAge {
		r.snap = &snapshot{gen: gen, at: time.Now(), disks: r.inv.Disks()}
	}
	f(r.snap)
	return nil
}

func (s *snapshot) listDicts() []map[string]dbus.Variant {
	if s.dicts == nil {
		s.dicts = disksReply(s.disks)
	}
	return s.dicts
}

func (s *snapshot) listTable() string {
	if s.table == "" {
		s.table = DiskTable(s.disks)
	}
	return s.table
}

// find answers Find with the dictionaries of List, shared.
func (s *snapshot) find(term string) []map[string]dbus.Variant {
	found := inventory.FindDisks(s.disks, term)
	if len(found) == 0 {
		return []map[string]dbus.Variant{}
	}
	dicts := s.listDicts()
	if s.index == nil {
		s.index = make(map[diskKey]int, len(s.disks))
		for i := range s.disks {
			s.index[keyOf(&s.disks[i])] = i
		}
	}
	out := make([]map[string]dbus.Variant, 0, len(found))
	for i := range found {
		if j, ok := s.index[keyOf(&found[i])]; ok {
			out = append(out, dicts[j])
		}
	}
	return out
}

func (s *snapshot) peerDicts(inv *inventory.Inventory) []map[string]dbus.Variant {
	if s.peers == nil {
		peers := inv.Peers()
		s.peers = make([]map[string]dbus.Variant, len(peers))
		for i, p := range peers {
			s.peers[i] = PeerDict(p)
		}
	}
	return s.peers
}
