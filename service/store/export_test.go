package store

import (
	"context"
	"log/slog"

	bolt "go.etcd.io/bbolt"
)

// CompactNow rewrites the file at once, whatever its size: for tests.
func (b *Bolt) CompactNow() error {
	if err := b.commit(false); err != nil {
		return err
	}
	b.dbMu.Lock()
	defer b.dbMu.Unlock()
	if b.db == nil {
		return ErrClosed
	}
	if err := b.compactLocked(); err != nil {
		return err
	}
	b.statMu.Lock()
	b.compacted++
	b.statMu.Unlock()
	return nil
}

// NodeDerefs is how many nodes bbolt has copied from the file's map into
// the heap since the file in use was opened: it copies every node of the
// open write transaction each time it has to map the file anew.
func (b *Bolt) NodeDerefs() int64 {
	b.dbMu.Lock()
	defer b.dbMu.Unlock()
	st := b.db.Stats()
	return st.TxStats.GetNodeDeref()
}

// BucketRoot returns the page id of a top-level bucket's root: for tests
// that damage a page the store uses.
func (b *Bolt) BucketRoot(name string) (uint64, int, error) {
	b.dbMu.Lock()
	defer b.dbMu.Unlock()
	var root uint64
	err := b.db.View(func(tx *bolt.Tx) error {
		root = uint64(tx.Bucket([]byte(name)).Root())
		return nil
	})
	return root, b.db.Info().PageSize, err
}

func (b *Bolt) MaintainLogged(tb interface{ Logf(string, ...any) }) error {
	old := b.log
	b.log = slog.New(slog.NewTextHandler(logfWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	defer func() { b.log = old }()
	return b.Maintain(context.Background())
}

type logfWriter struct {
	tb interface{ Logf(string, ...any) }
}

func (w logfWriter) Write(p []byte) (int, error) { w.tb.Logf("%s", p); return len(p), nil }
