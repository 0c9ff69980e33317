package store

import (
	"context"
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Compaction thresholds: the file is rewritten when it is at least
// compactMinSize and more than compactRatio times its content (the bytes
// its pages actually use), and at least compactMinGain would be saved.
const (
	compactMinSize = 1 << 20
	compactRatio   = 1.5
	compactMinGain = 1 << 20
)

// allocSize is how much a file grows at a time beyond 16 MB (bbolt's
// default of 16 MB would leave that much unused at the end of the file).
const allocSize = 1 << 20

// compactTxSize bounds the bytes of keys and values a compaction copies in
// one transaction of the new file. A transaction keeps every page it
// writes in memory until it commits, so one transaction for the whole
// file would hold the whole file in the heap.
const compactTxSize = 1 << 20

// growthGap: the writer asks for a maintenance pass early when the file
// has grown past compactRatio times its content, at most this often.
const growthGap = time.Minute

func (b *Bolt) maintainer(ctx context.Context) {
	defer b.wg.Done()
	every(ctx, b.opts.MaintainInterval, b.grew, func() { _ = b.Maintain(ctx) })
}

// Maintain applies retention, commits, and rewrites the file when it is
// much larger than its content. Writes go on meanwhile: they wait in
// memory and are committed to the new file.
func (b *Bolt) Maintain(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.RLock()
	closed := b.closed
	b.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	b.pruneNow()
	if err := b.commit(false); err != nil {
		return err
	}
	b.dbMu.Lock()
	defer b.dbMu.Unlock()
	if b.db == nil {
		return ErrClosed
	}
	var size, content int64
	err := safely(func() (err error) { size, content, err = b.sizes(); return err })
	if err != nil {
		return b.report(fmt.Errorf("measuring %s: %w", b.path, err))
	}
	b.statMu.Lock()
	b.content, b.lastMaintain = content, time.Now()
	b.statMu.Unlock()
	b.log.Debug("state store: sizes", "file", size, "content", content)
	if size < compactMinSize || float64(size) <= compactRatio*float64(content) || size-content < compactMinGain {
		return nil
	}
	start := time.Now()
	if err := safely(b.compactLocked); err != nil {
		return b.report(fmt.Errorf("compacting %s: %w", b.path, err))
	}
	after, content, _ := b.sizes()
	b.statMu.Lock()
	b.compacted++
	b.content = content
	b.statMu.Unlock()
	b.log.Info("state store: compacted", "file", b.path, "before", size, "after", after,
		"took", time.Since(start).Round(time.Millisecond))
	return nil
}

// sizes returns the file's size and the bytes its pages actually use
// (what a compacted file needs, about).
func (b *Bolt) sizes() (size, content int64, err error) {
	fi, err := os.Stat(b.path)
	if err != nil {
		return 0, 0, err
	}
	content = 4 * int64(b.db.Info().PageSize) // meta pages, freelist, root
	err = b.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(_ []byte, bk *bolt.Bucket) error {
			st := bk.Stats()
			content += int64(st.BranchInuse + st.LeafInuse)
			return nil
		})
	})
	return fi.Size(), content, err
}

// compactLocked copies the file into DIR/diskd.db.compact, syncs it,
// renames it over the file and switches to it. The new file is opened
// (and locked) before the rename, so the lock is never let go.
//
// The copy is mapped at the old file's size from the start: it needs no
// more, and bbolt copies every node of the open transaction into the heap
// each time it has to map a file anew. It is written without a sync per
// transaction and synced once before the rename, which is what makes it
// the file.
func (b *Bolt) compactLocked() error {
	tmp := b.path + ".compact"
	if err := os.Remove(tmp); err != nil && !os.IsNotExist(err) {
		return err
	}
	fi, err := os.Stat(b.path)
	if err != nil {
		return err
	}
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: b.opts.LockTimeout,
		InitialMmapSize: int(fi.Size()), NoSync: true})
	if err != nil {
		return err
	}
	done := false
	defer func() { // also when bbolt panics
		if !done {
			_ = dst.Close()
			_ = os.Remove(tmp)
		}
	}()
	dst.AllocSize = allocSize
	if err := bolt.Compact(dst, b.db, compactTxSize); err != nil {
		return err
	}
	if err := dst.Sync(); err != nil {
		return err
	}
	dst.NoSync = false
	if err := os.Rename(tmp, b.path); err != nil {
		return err
	}
	done = true
	if err := syncDir(b.dir); err != nil {
		b.log.Warn("state store: syncing the directory after compaction", "dir", b.dir, "err", err)
	}
	old := b.db
	b.db = dst
	return old.Close()
}

// checkGrowth asks the maintainer for an early pass when the file has
// grown past compactRatio times its content at the last pass.
func (b *Bolt) checkGrowth() {
	fi, err := os.Stat(b.path)
	if err != nil {
		return
	}
	b.statMu.Lock()
	due := growthDue(fi.Size(), b.content, b.lastMaintain, time.Now())
	b.statMu.Unlock()
	if due {
		signal(b.grew)
	}
}

// growthDue says whether a file of size bytes, whose content was measured
// at the last maintenance pass, calls for an early pass at now.
func growthDue(size, content int64, last, now time.Time) bool {
	return size >= compactMinSize && float64(size) > compactRatio*float64(content)+compactMinGain &&
		now.Sub(last) >= growthGap
}

// safely runs fn, turning a panic into an error: bbolt panics on some
// damaged pages, and a page can go bad after Open checked the file.
func safely(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("bbolt panicked: %v", r)
		}
	}()
	return fn()
}
