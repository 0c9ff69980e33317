// Package memory connects diskd's live inventory to its store: a Recorder
// follows the inventory's change events and writes what they say into a
// service/store Store (disks seen, disks gone and why, hosts gone, peers'
// replay marks), and answers the front ends' questions about disks that
// are no longer attached (diskstate.Memory).
//
// It is not the store (service/store keeps the records and the file) and
// not the inventory (which disks are attached now is the inventory's
// business): it only translates between the two, in the manner of an
// event consumer that keeps a snapshot. It never blocks the inventory:
// events reach it through a buffered subscription, and when that buffer
// overflowed it reconciles the store with a snapshot of the inventory.
//
// Besides events, it refreshes every present disk's last-seen time every
// RefreshInterval (the inventory publishes nothing for an announcement
// that repeats the last one), and each peer's replay mark MarkInterval
// after the subscription's Marks signal says one moved, so that at most
// about that much of a peer's traffic is accepted again after the daemon
// is killed, and a quiet network costs no wakeups; a clean stop records
// the final marks. At start, Marks gives the remembered marks for the
// inventory's RestoreMarks.
package memory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/diskd/diskd/service/defaults"
	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/inventory"
	"github.com/diskd/diskd/service/store"
)

// OpenStore opens the store in dir (made 0700 when missing), or one in
// memory for this run only when dir is empty. A directory held by another
// diskd is an error that wraps store.ErrLocked and says so in one line; a
// damaged file is moved aside and logged by the store, which then starts
// empty. The store's goroutines outlive ctx: they stop at Close, after the
// last writes of a shutdown.
func OpenStore(ctx context.Context, dir string, opts store.Options) (store.Store, error) {
	if dir == "" {
		return store.NewMemory(opts), nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w (set another with --state-dir, or --state-dir none)", err)
	}
	b, err := store.Open(context.WithoutCancel(ctx), dir, opts)
	if errors.Is(err, store.ErrLocked) {
		return nil, err // its one line says it all
	} else if err != nil {
		return nil, fmt.Errorf("opening the store: %w", err)
	}
	return b, nil
}

// Options tune a Recorder; zero values take the defaults.
type Options struct {
	// HostID is this host's id: its disks are shown as local.
	HostID string
	// ReturnAfter: a disk that comes back after it was gone for at least
	// this long is marked returned on its DiskAppeared event. Default 1
	// minute.
	ReturnAfter time.Duration
	// RefreshInterval: how often present disks' last-seen times are
	// written. Default 30 s.
	RefreshInterval time.Duration
	// MarkInterval: peers' replay marks are written this long after the
	// first one moved, so at most this often, and not while none moves.
	// Default 1 s.
	MarkInterval time.Duration
	Log          *slog.Logger
	Now          func() time.Time
}

// Defaults for Options.
const (
	DefaultReturnAfter     = time.Minute
	DefaultRefreshInterval = 30 * time.Second
	DefaultMarkInterval    = time.Second
)

// Recorder writes the inventory's changes into a store and answers from
// it. Create it with New; it is safe for concurrent use.
type Recorder struct {
	st   store.Store
	opts Options

	mu     sync.Mutex
	marks  map[string]inventory.Mark // the last mark written per peer
	failed uint64                    // store writes refused
}

// New returns a recorder writing into st.
func New(st store.Store, opts Options) *Recorder {
	opts.ReturnAfter = defaults.Positive(opts.ReturnAfter, DefaultReturnAfter)
	opts.RefreshInterval = defaults.Positive(opts.RefreshInterval, DefaultRefreshInterval)
	opts.MarkInterval = defaults.Positive(opts.MarkInterval, DefaultMarkInterval)
	opts.Log = defaults.Logger(opts.Log)
	opts.Now = defaults.Clock(opts.Now)
	r := &Recorder{st: st, opts: opts, marks: r0Marks(st)}
	return r
}

func r0Marks(st store.Store) map[string]inventory.Mark {
	out := map[string]inventory.Mark{}
	for _, p := range st.Peers() {
		out[p.HostID] = inventory.Mark{BootID: p.Mark.BootID, Seq: p.Mark.Seq, SentAt: p.Mark.SentAt}
	}
	return out
}

// Marks returns every remembered peer's replay mark, for the inventory's
// RestoreMarks.
func (r *Recorder) Marks() map[string]inventory.Mark { return r0Marks(r.st) }

// Annotate marks a disk that appears as returned when the store remembers
// it as gone for at least ReturnAfter (not because diskd restarted, which
// says nothing about the disk), with where and when it was last seen. It
// is the inventory's Options.Annotate: it reads the store's memory only.
func (r *Recorder) Annotate(d *diskstate.Disk) {
	rec, ok := r.st.Disk(store.Identity(info(d)))
	if !ok || rec.Present || rec.GoneReason == store.ReasonRestart {
		return
	}
	if r.opts.Now().Sub(rec.LastSeen) < r.opts.ReturnAfter {
		return
	}
	d.Returned = true
	d.PreviousHostname, d.PreviousDevice, d.PreviousLastSeen = rec.Hostname, rec.Device, rec.LastSeen
}

// Run records sub's events (a subscription to inv made before inv was
// first filled) until ctx ends, then records the final replay marks. It
// closes sub.
func (r *Recorder) Run(ctx context.Context, inv *inventory.Inventory, sub *inventory.Subscription) error {
	defer sub.Close()
	refresh := time.NewTicker(r.opts.RefreshInterval)
	defer refresh.Stop()
	// The marks are written MarkInterval after the first move not yet
	// written: a stream of datagrams costs one write an interval, a quiet
	// network nothing.
	marks := time.NewTimer(r.opts.MarkInterval)
	marks.Stop()
	defer marks.Stop()
	armed := false
	var dropped uint64
	for {
		moved := sub.Marks()
		if armed { // a write is due: moves meanwhile wait for it
			moved = nil
		}
		select {
		case <-ctx.Done():
			for { // what is queued already
				select {
				case e := <-sub.C():
					r.event(e)
					continue
				default:
				}
				break
			}
			r.recordMarks(inv)
			return nil
		case e := <-sub.C():
			r.event(e)
			// At the end of a burst: events dropped meanwhile were
			// dropped while the buffer was full, so before the last one.
			if n := sub.Dropped(); n != dropped && len(sub.C()) == 0 {
				dropped = n
				r.reconcile(inv)
			}
		case <-refresh.C:
			r.refresh(inv)
		case <-moved:
			marks.Reset(r.opts.MarkInterval)
			armed = true
		case <-marks.C:
			armed = false
			r.recordMarks(inv)
		}
	}
}

// event records one change.
func (r *Recorder) event(e *inventory.Event) {
	switch e.Kind {
	case inventory.DiskAppeared, inventory.DiskChanged:
		r.check(r.st.Seen(e.Disk.LastSeen, info(&e.Disk)))
	case inventory.DiskDisappeared:
		d := info(&e.Disk)
		if rec, ok := r.st.Disk(store.Identity(d)); ok && rec.Present && rec.HostID == d.HostID && rec.Device == d.Device {
			// Its last announcement, which may be newer than the last
			// refresh.
			r.check(r.st.Seen(e.Disk.LastSeen, d))
		}
		r.check(r.st.Gone(r.opts.Now(), goneReason(e.Reason), d))
	case inventory.PeerLost:
		r.check(r.st.HostGone(r.opts.Now(), goneReason(e.Reason), e.Peer.HostID))
	}
}

func goneReason(peerLost string) store.GoneReason {
	switch peerLost {
	case inventory.ReasonBye:
		return store.ReasonBye
	case inventory.ReasonTimeout:
		return store.ReasonTimeout
	}
	return store.ReasonDetached
}

// recordMarks writes every mark of the inventory (peers held and
// departed ones) that moved since it was last written, with the peer's
// hostname, address and last-heard time when it is held, else as
// remembered. A departed peer the store has no record of yet (it came
// and said bye between two runs of recordMarks) was heard at the latest
// now, since its mark moved. A mark the store refused is tried again on
// the next run.
func (r *Recorder) recordMarks(inv *inventory.Inventory) {
	marks := inv.Marks()
	r.mu.Lock()
	var moved []string
	for id, m := range marks {
		if last, ok := r.marks[id]; !ok || last.Seq != m.Seq || last.BootID != m.BootID || !last.SentAt.Equal(m.SentAt) {
			moved = append(moved, id)
		}
	}
	r.mu.Unlock()
	if len(moved) == 0 {
		return
	}
	live := map[string]diskstate.Peer{}
	for _, p := range inv.Peers() {
		live[p.HostID] = p
	}
	for _, id := range moved {
		m := marks[id]
		p := store.Peer{HostID: id, Mark: store.Mark{BootID: m.BootID, Seq: m.Seq, SentAt: m.SentAt}}
		if lp, ok := live[id]; ok {
			p.Hostname, p.Addr, p.LastHeard = lp.Hostname, lp.Address, lp.LastHeard
		} else if old, ok := r.st.Peer(id); ok {
			p.Hostname, p.Addr, p.LastHeard = old.Hostname, old.Addr, old.LastHeard
		} else {
			p.LastHeard = r.opts.Now()
		}
		if err := r.st.Heard(p); err != nil {
			r.check(err)
			continue
		}
		r.mu.Lock()
		r.marks[id] = m
		r.mu.Unlock()
	}
}

// refresh writes every present disk's last-seen time, one call per host.
func (r *Recorder) refresh(inv *inventory.Inventory) {
	// Host by host (sorted by hostname and host id), not a copy of every
	// disk at once: 16,000 disks would be 7 MB every RefreshInterval.
	var batch []store.DiskInfo
	inv.EachHost(func(disks []diskstate.Disk) {
		batch = batch[:0]
		for i := range disks {
			batch = append(batch, info(&disks[i]))
		}
		r.check(r.st.Seen(disks[0].LastSeen, batch...)) // one time for all of a host's disks
	})
}

// reconcile brings the store in line with the inventory after events
// were lost: every disk the store holds present that the inventory does
// not is gone (detached), and every present one is seen.
func (r *Recorder) reconcile(inv *inventory.Inventory) {
	r.opts.Log.Warn("the store fell behind the inventory's events; reconciling with a snapshot")
	live := map[string]bool{}
	for _, d := range inv.Disks() {
		live[store.Identity(info(&d))] = true
	}
	now := r.opts.Now()
	for _, d := range r.st.Disks() {
		if d.Present && !live[d.Key] {
			r.check(r.st.Gone(now, store.ReasonDetached, store.DiskInfo{HostID: d.HostID, Hostname: d.Hostname,
				Device: d.Device, Label: d.Label, Type: d.Type, UUID: d.UUID, PartUUID: d.PartUUID}))
		}
	}
	r.refresh(inv)
}

// check counts and logs (the first, then every 1000th) a write the store
// refused: a network string it does not take, or a closed store.
func (r *Recorder) check(err error) {
	if err == nil {
		return
	}
	r.mu.Lock()
	r.failed++
	n := r.failed
	r.mu.Unlock()
	if n == 1 || n%1000 == 0 {
		r.opts.Log.Warn("store refused a write", "err", err, "refused", n)
	}
}

// Find answers diskstate.Memory's Find.
func (r *Recorder) Find(term string) []diskstate.Disk { return r.disks(r.st.Find(term)) }

// Disks answers diskstate.Memory's Disks.
func (r *Recorder) Disks() []diskstate.Disk { return r.disks(r.st.Disks()) }

// History answers diskstate.Memory's History.
func (r *Recorder) History(term string) []diskstate.Sighting {
	hs := r.st.History(term)
	out := make([]diskstate.Sighting, len(hs))
	for i, h := range hs {
		out[i] = diskstate.Sighting{HostID: h.HostID, Hostname: h.Hostname, Device: h.Device, UUID: h.UUID,
			PartUUID: h.PartUUID, Label: h.Label, Type: h.Type, From: h.From, Until: h.Until, Reason: string(h.Reason)}
	}
	return out
}

func (r *Recorder) disks(ds []store.Disk) []diskstate.Disk {
	out := make([]diskstate.Disk, len(ds))
	for i, d := range ds {
		out[i] = diskstate.Disk{HostID: d.HostID, Hostname: d.Hostname, Device: d.Device, UUID: d.UUID,
			PartUUID: d.PartUUID, Label: d.Label, Type: d.Type, Mountpoints: []string{},
			Local: d.HostID == r.opts.HostID, LastSeen: d.LastSeen, Present: d.Present,
			GoneAt: d.GoneAt, GoneReason: string(d.GoneReason)}
		if d.Present {
			out[i].Mountpoints = slices.Clone(d.MountPoints)
			if out[i].Mountpoints == nil {
				out[i].Mountpoints = []string{}
			}
		}
	}
	return out
}

// info is a disk as the store takes it.
func info(d *diskstate.Disk) store.DiskInfo {
	return store.DiskInfo{HostID: d.HostID, Hostname: d.Hostname, Device: d.Device, Label: d.Label,
		Type: d.Type, UUID: d.UUID, PartUUID: d.PartUUID, MountPoints: d.Mountpoints}
}
