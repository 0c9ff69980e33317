package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// FileName is the store's file inside the state directory.
const FileName = "diskd.db"

// Bolt is the Store kept in a bbolt file, DIR/diskd.db. It owns two
// goroutines, started by Open and stopped by Close: the writer (commits
// pending changes) and the maintainer (retention and compaction).
type Bolt struct {
	*core
	dir, path string
	log       *slog.Logger
	aside     string

	dbMu          sync.Mutex // serialises commits, compaction and Close on db
	db            *bolt.DB
	lastSeenFlush time.Time

	wakes atomic.Uint64 // the writer's commit attempts, for tests

	statMu       sync.Mutex
	commits      uint64
	lastCommit   time.Time
	lastErr      string
	compacted    uint64
	content      int64 // bytes the file's pages use, at the last maintenance
	lastMaintain time.Time

	changed   chan struct{} // to the writer: something is pending
	kick      chan struct{} // to the writer: a batch is full
	grew      chan struct{} // to the maintainer: the file grew
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

var _ Store = (*Bolt)(nil)

type lockedError struct{ dir, path string }

func (e *lockedError) Error() string {
	return fmt.Sprintf("state directory %s is in use by another diskd (its lock on %s is held)", e.dir, e.path)
}

func (e *lockedError) Is(target error) bool { return target == ErrLocked }

// corruptError is a file whose content cannot be used.
type corruptError struct{ err error }

func (e *corruptError) Error() string { return e.err.Error() }
func (e *corruptError) Unwrap() error { return e.err }

// newerError is a file written with a newer schema than this diskd knows.
type newerError struct{ version uint64 }

func (e *newerError) Error() string {
	return fmt.Sprintf("its schema version %d is newer than this diskd's %d", e.version, schemaVersion)
}

// Open opens (creating when needed) the store in dir and starts its
// goroutines; they run until Close or until ctx ends (then pending
// changes are committed and Close commits whatever came later).
//
// A directory held by another process fails after Options.LockTimeout
// with an error that satisfies errors.Is(err, ErrLocked). A file that
// cannot be used (not a bbolt file, a failed consistency check, a record
// that does not decode or breaks an invariant, a newer schema) is renamed
// to diskd.db.corrupt-TIME (or diskd.db.newer-schema-TIME), reported once
// through the logger and by MovedAside, and replaced by an empty store.
//
// Disks the previous run left present become gone with ReasonRestart at
// their last-seen time, and retention is applied, before Open returns.
func Open(ctx context.Context, dir string, opts Options) (*Bolt, error) {
	opts = opts.withDefaults()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	b := &Bolt{dir: dir, path: filepath.Join(dir, FileName), log: opts.Logger,
		changed: make(chan struct{}, 1), kick: make(chan struct{}, 1), grew: make(chan struct{}, 1)}
	c, db, err := b.openLoad(opts)
	if err != nil {
		var ce *corruptError
		var ne *newerError
		kind := "corrupt"
		switch {
		case errors.As(err, &ce):
		case errors.As(err, &ne):
			kind = "newer-schema"
		default:
			return nil, err
		}
		aside, merr := moveAside(b.path, kind, opts.Now())
		if merr != nil {
			return nil, fmt.Errorf("state file %s cannot be used (%v) and cannot be moved aside: %w", b.path, err, merr)
		}
		b.aside = aside
		b.log.Warn("state file cannot be used: moved aside, starting with an empty store",
			"file", b.path, "moved_to", aside, "reason", err.Error())
		if c, db, err = b.openLoad(opts); err != nil {
			return nil, fmt.Errorf("state file %s: a fresh file does not open either: %w", b.path, err)
		}
	}
	b.core, b.db = c, db
	b.mu.Lock()
	for key, e := range c.disks {
		if e.rec.Present {
			c.gone(e.rec.Last, must(reasonCode(ReasonRestart)), e, key)
		}
	}
	c.prune(opts.Now())
	b.mu.Unlock()
	if err := b.commit(true); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("state file %s: %w", b.path, err)
	}
	if _, content, err := b.sizes(); err == nil {
		b.content, b.lastMaintain = content, time.Now()
	}
	ctx, b.cancel = context.WithCancel(ctx)
	b.wg.Add(2)
	go b.writer(ctx)
	go b.maintainer(ctx)
	return b, nil
}

// MovedAside returns the path an unusable file was moved to by Open, or "".
func (b *Bolt) MovedAside() string { return b.aside }

// Path returns the store's file.
func (b *Bolt) Path() string { return b.path }

// openBolt opens path, holding its lock, and makes sure the lock is on
// the file that is at path now (a compaction may have replaced it while
// this process waited).
func openBolt(dir, path string, timeout time.Duration) (*bolt.DB, error) {
	for range 3 {
		var f *os.File
		var openErr error
		db, err := bolt.Open(path, 0o600, &bolt.Options{
			Timeout: timeout,
			OpenFile: func(name string, flag int, mode os.FileMode) (*os.File, error) {
				f, openErr = os.OpenFile(name, flag, mode)
				return f, openErr
			},
		})
		switch {
		case openErr != nil:
			return nil, fmt.Errorf("state file: %w", openErr)
		case errors.Is(err, berrors.ErrTimeout):
			return nil, &lockedError{dir: dir, path: path}
		case err != nil:
			return nil, &corruptError{err}
		}
		held, err1 := f.Stat()
		now, err2 := os.Stat(path)
		if err1 == nil && err2 == nil && os.SameFile(held, now) {
			db.AllocSize = allocSize
			return db, nil
		}
		_ = db.Close()
	}
	return nil, &lockedError{dir: dir, path: path}
}

// openLoad opens the file and loads it into a new core.
func (b *Bolt) openLoad(opts Options) (c *core, db *bolt.DB, err error) {
	defer func() {
		if r := recover(); r != nil { // bbolt panics on some corrupt pages
			if db != nil {
				_ = db.Close()
			}
			c, db, err = nil, nil, &corruptError{fmt.Errorf("bbolt panicked: %v", r)}
		}
	}()
	db, err = openBolt(b.dir, b.path, opts.LockTimeout)
	if err != nil {
		return nil, nil, err
	}
	c = newCore(opts, true)
	if err := load(db, c); err != nil {
		_ = db.Close()
		return nil, nil, err
	}
	return c, db, nil
}

// load checks the file and reads every record into c.
func load(db *bolt.DB, c *core) error {
	err := db.View(func(tx *bolt.Tx) error {
		var first error
		for err := range tx.Check() {
			if first == nil {
				first = err
			}
		}
		if first != nil {
			return &corruptError{fmt.Errorf("consistency check: %w", first)}
		}
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			if k, _ := tx.Cursor().First(); k != nil {
				return &corruptError{errors.New("no meta bucket")}
			}
			return nil // a new file
		}
		v := meta.Get(keySchema)
		if len(v) != 8 {
			return &corruptError{fmt.Errorf("schema version of %d bytes", len(v))}
		}
		if ver := binary.BigEndian.Uint64(v); ver > schemaVersion {
			return &newerError{ver}
		} else if ver == 0 {
			return &corruptError{errors.New("schema version 0")}
		}
		hosts, disks, seen, peers := tx.Bucket(bucketHosts), tx.Bucket(bucketDisks), tx.Bucket(bucketSeen), tx.Bucket(bucketPeers)
		if hosts == nil || disks == nil || seen == nil || peers == nil {
			return &corruptError{errors.New("a bucket is missing")}
		}
		if err := hosts.ForEach(func(k, v []byte) error {
			h, err := decodeHost(k, v)
			if err != nil {
				return &corruptError{err}
			}
			if _, dup := c.hostIDs[h.Ref]; dup {
				return &corruptError{fmt.Errorf("host %q: number %d is taken", k, h.Ref)}
			}
			c.hosts[string(k)] = &hostEntry{ref: h.Ref, hostname: h.Hostname}
			c.hostIDs[h.Ref] = string(k)
			c.nextRef = max(c.nextRef, h.Ref+1)
			return nil
		}); err != nil {
			return err
		}
		if err := disks.ForEach(func(k, v []byte) error {
			r, err := decodeDisk(k, v)
			if err != nil {
				return &corruptError{err}
			}
			for _, p := range r.Places {
				if _, ok := c.hostIDs[p.Host]; !ok {
					return &corruptError{fmt.Errorf("disk %q: a place refers to unknown host %d", k, p.Host)}
				}
			}
			if id := c.hostIDs[r.Places[r.Sightings[0].Place].Host]; id != r.HostID {
				return &corruptError{fmt.Errorf("disk %q: newest sighting on host %q, the disk on %q", k, id, r.HostID)}
			}
			for _, p := range r.Places {
				c.hosts[c.hostIDs[p.Host]].uses++
			}
			c.addDisk(string(k), r)
			return nil
		}); err != nil {
			return err
		}
		for _, h := range c.hosts {
			if h.uses == 0 { // no disk refers to it any more: drop it
				c.use(h.ref, 0)
			}
		}
		if err := seen.ForEach(func(k, v []byte) error {
			e := c.disks[string(k)]
			if len(v) != 8 || e == nil {
				return &corruptError{fmt.Errorf("last-seen entry %q of %d bytes without its disk", k, len(v))}
			}
			if t := int64(binary.BigEndian.Uint64(v)); e != nil && e.rec.Present && t > e.rec.Last {
				e.rec.Last = t
				e.rec.Sightings[0].Until = sec(t)
				c.dage.update(e.age, t)
			}
			return nil
		}); err != nil {
			return err
		}
		return peers.ForEach(func(k, v []byte) error {
			r, err := decodePeer(k, v)
			if err != nil {
				return &corruptError{err}
			}
			c.addPeer(string(k), r)
			return nil
		})
	})
	if err != nil {
		return err
	}
	return db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketHosts, bucketDisks, bucketSeen, bucketPeers} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keySchema, u64(schemaVersion))
	})
}

func moveAside(path, kind string, now time.Time) (string, error) {
	base := path + "." + kind + "-" + now.UTC().Format("20060102T150405Z")
	to := base
	for i := 1; ; i++ {
		if _, err := os.Lstat(to); errors.Is(err, os.ErrNotExist) {
			break
		}
		to = fmt.Sprintf("%s-%d", base, i)
	}
	if err := os.Rename(path, to); err != nil {
		return "", err
	}
	return to, syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// maybeKick tells the writer, after a write that succeeded, that a batch
// is full or that something is pending.
func (b *Bolt) maybeKick(err error) error {
	if err != nil {
		return err
	}
	b.mu.RLock()
	n, seen := b.urgent(), len(b.dirtySeen)
	b.mu.RUnlock()
	switch {
	case n >= b.opts.BatchSize:
		signal(b.kick)
	case n+seen > 0:
		signal(b.changed)
	}
	return nil
}

// signal sends on a channel of one that has room, else leaves the value
// already pending.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Seen implements Store.
func (b *Bolt) Seen(at time.Time, disks ...DiskInfo) error {
	return b.maybeKick(b.core.Seen(at, disks...))
}

// Gone implements Store.
func (b *Bolt) Gone(at time.Time, reason GoneReason, disks ...DiskInfo) error {
	return b.maybeKick(b.core.Gone(at, reason, disks...))
}

// HostGone implements Store.
func (b *Bolt) HostGone(at time.Time, reason GoneReason, hostID string) error {
	return b.maybeKick(b.core.HostGone(at, reason, hostID))
}

// Heard implements Store.
func (b *Bolt) Heard(peers ...Peer) error {
	return b.maybeKick(b.core.Heard(peers...))
}

// writer commits FlushInterval after the first change not yet committed,
// at once when a batch is full, pending last-seen times once SeenInterval
// has passed since they were last written, a failed commit again after
// FlushInterval, and everything when ctx ends. While nothing is pending it
// sleeps: an idle daemon's store costs no wakeups.
func (b *Bolt) writer(ctx context.Context) {
	defer b.wg.Done()
	t := time.NewTimer(time.Hour)
	t.Stop()
	defer t.Stop()
	var due time.Time // when t fires; zero while it is stopped
	// arm makes t fire within d, or sooner if it is due sooner already.
	arm := func(d time.Duration) {
		if at := time.Now().Add(d); due.IsZero() || at.Before(due) {
			t.Reset(d)
			due = at
		}
	}
	for {
		changed := b.changed
		if !due.IsZero() && time.Until(due) <= b.opts.FlushInterval {
			changed = nil // a commit comes soon enough: changes wait for it
		}
		select {
		case <-ctx.Done():
			_ = b.commit(true)
			return
		case <-changed:
			arm(b.opts.FlushInterval)
			continue
		case <-b.kick:
		case <-t.C:
			due = time.Time{}
		}
		b.wakes.Add(1)
		if err := b.commit(false); err != nil {
			arm(b.opts.FlushInterval)
		} else {
			b.checkGrowth()
		}
		if wait, ok := b.seenWait(); ok {
			arm(wait)
		}
	}
}

// seenWait says whether last-seen times are pending and how long until
// they are due (at least FlushInterval).
func (b *Bolt) seenWait() (time.Duration, bool) {
	b.dbMu.Lock()
	last := b.lastSeenFlush
	b.dbMu.Unlock()
	b.mu.RLock()
	n := len(b.dirtySeen)
	b.mu.RUnlock()
	return max(time.Until(last.Add(b.opts.SeenInterval)), b.opts.FlushInterval), n > 0
}

// every calls do each interval, and at once when wake fires, until ctx is
// done.
func every(ctx context.Context, interval time.Duration, wake <-chan struct{}, do func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-wake:
		}
		do()
	}
}

// op is one write of a batch: a put, or a delete when v is nil.
type op struct {
	bucket []byte
	k      string
	v      []byte
}

// batch is the changes taken from memory for one commit, in the order
// they must reach the file: new hosts before the disks that refer to
// them, removed hosts after the disks that referred to them.
type batch struct{ ops []op }

func sortOps(ops []op) []op {
	slices.SortFunc(ops, func(a, b op) int { return strings.Compare(a.k, b.k) })
	return ops
}

// recordOps returns the writes of the dirty keys: the record of each key
// that entries still holds, encoded, and a delete for each it no longer
// holds.
func recordOps[E any](bucket []byte, what string, dirty map[string]struct{}, entries map[string]*E, rec func(*E) any) ([]op, error) {
	var ops []op
	for k := range dirty {
		var v []byte
		if e := entries[k]; e != nil {
			var err error
			if v, err = marshal(rec(e)); err != nil {
				return nil, fmt.Errorf("encoding %s %q: %w", what, k, err)
			}
		}
		ops = append(ops, op{bucket, k, v})
	}
	return ops, nil
}

// take moves the pending changes into a batch, encoding the records.
func (b *Bolt) take(withSeen bool) (*batch, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var hostPuts, hostDels []op
	for k := range b.dirtyHost {
		h := b.hosts[k]
		if h == nil {
			hostDels = append(hostDels, op{bucketHosts, k, nil})
			continue
		}
		v, err := marshal(&hostRec{Ref: h.ref, Hostname: h.hostname})
		if err != nil {
			return nil, fmt.Errorf("encoding host %q: %w", k, err)
		}
		hostPuts = append(hostPuts, op{bucketHosts, k, v})
	}
	// A disk written whole (or deleted) drops its last-seen entry.
	disks, err := recordOps(bucketDisks, "disk", b.dirtyFull, b.disks, func(e *diskEntry) any { return e.rec })
	if err != nil {
		return nil, err
	}
	if withSeen {
		for k := range b.dirtySeen {
			if e := b.disks[k]; e != nil {
				disks = append(disks, op{bucketSeen, k, u64(uint64(e.rec.Last))})
			}
		}
	}
	peers, err := recordOps(bucketPeers, "peer", b.dirtyPeer, b.peers, func(e *peerEntry) any { return e.rec })
	if err != nil {
		return nil, err
	}
	seen := b.dirtySeen
	b.resetDirty()
	if !withSeen {
		b.dirtySeen = seen
	}
	bt := &batch{}
	for _, g := range [][]op{hostPuts, disks, peers, hostDels} {
		bt.ops = append(bt.ops, sortOps(g)...)
	}
	return bt, nil
}

// restore puts a failed batch's keys back into the pending sets.
func (b *Bolt) restore(ops []op) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, o := range ops {
		switch string(o.bucket) {
		case string(bucketHosts):
			b.markHost(o.k)
		case string(bucketDisks):
			b.markDisk(o.k, true)
		case string(bucketSeen):
			b.markDisk(o.k, false)
		case string(bucketPeers):
			b.markPeer(o.k)
		}
	}
}

// apply writes ops in one transaction.
func apply(tx *bolt.Tx, ops []op) error {
	for _, o := range ops {
		bk := tx.Bucket(o.bucket)
		var err error
		if o.v == nil {
			err = bk.Delete([]byte(o.k))
		} else {
			err = bk.Put([]byte(o.k), o.v)
		}
		if err == nil && string(o.bucket) == string(bucketDisks) {
			err = tx.Bucket(bucketSeen).Delete([]byte(o.k))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// commit writes the pending changes, at most BatchSize records per
// transaction (so a large batch does not need twice its size in new
// pages); with all it also writes the throttled last-seen times. The
// order of the batch keeps the file consistent between transactions.
// What fails stays pending.
func (b *Bolt) commit(all bool) (err error) {
	b.dbMu.Lock()
	defer b.dbMu.Unlock()
	if b.db == nil {
		return ErrClosed
	}
	now := time.Now()
	withSeen := all || now.Sub(b.lastSeenFlush) >= b.opts.SeenInterval
	bt, err := b.take(withSeen)
	if err != nil {
		return b.report(err)
	}
	if withSeen {
		b.lastSeenFlush = now
	}
	for ops := bt.ops; len(ops) > 0; {
		n := min(len(ops), b.opts.BatchSize)
		err := safely(func() error {
			return b.db.Update(func(tx *bolt.Tx) error { return apply(tx, ops[:n]) })
		})
		if err != nil {
			b.restore(ops)
			return b.report(fmt.Errorf("committing to %s: %w", b.path, err))
		}
		ops = ops[n:]
		b.statMu.Lock()
		b.commits++
		b.lastCommit = now
		b.statMu.Unlock()
	}
	return b.report(nil)
}

// report records the outcome of a commit or maintenance pass and logs the
// first failure of a streak and the recovery after it.
func (b *Bolt) report(err error) error {
	b.statMu.Lock()
	defer b.statMu.Unlock()
	switch {
	case err != nil && b.lastErr == "":
		b.log.Error("state store: writing failed; changes stay in memory and are retried", "err", err)
	case err == nil && b.lastErr != "":
		b.log.Info("state store: writing works again", "file", b.path)
	}
	if err != nil {
		b.lastErr = err.Error()
	} else {
		b.lastErr = ""
	}
	return err
}

// Flush commits every pending change now.
func (b *Bolt) Flush(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return b.commit(true)
}

// Stats reports counters.
func (b *Bolt) Stats() Stats {
	s := b.stats()
	b.statMu.Lock()
	s.Commits, s.LastCommit, s.LastError, s.Compacted = b.commits, b.lastCommit, b.lastErr, b.compacted
	b.statMu.Unlock()
	if fi, err := os.Stat(b.path); err == nil {
		s.FileSize = fi.Size()
	}
	return s
}

// Close stops the goroutines, commits what is pending and closes the file.
func (b *Bolt) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		b.mu.Unlock()
		b.cancel()
		b.wg.Wait()
		err := b.commit(true)
		b.dbMu.Lock()
		if cerr := b.db.Close(); err == nil {
			err = cerr
		}
		b.db = nil
		b.dbMu.Unlock()
		b.closeErr = err
	})
	return b.closeErr
}
