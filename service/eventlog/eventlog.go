// Package eventlog writes the inventory's change events to the daemon's log
// as sentences: a peer that joined or was lost, a disk of this host that
// appeared, disappeared or changed, and the disks of peers. Every string
// that came from the network or a disk is escaped. A [Writer] summarises
// each peer's changes in one line and rate-limits the lines about peers,
// so that what the network sends cannot flood the journal.
//
// It is not the inventory (which decides what changed) and not the journal
// setup (cmd/diskd chooses the handler and level). It owns only how the
// events read in the log.
package eventlog

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/inventory"
	"github.com/diskd/diskd/service/present"
)

// Log writes one event.
func Log(ctx context.Context, log *slog.Logger, e inventory.Event) {
	switch e.Kind {
	case inventory.PeerJoined:
		log.LogAttrs(ctx, slog.LevelInfo, "peer joined", peerAttrs(e.Peer)...)
	case inventory.PeerLost:
		log.LogAttrs(ctx, slog.LevelInfo, "peer lost", append(peerAttrs(e.Peer), slog.String("reason", e.Reason))...)
	case inventory.DiskAppeared, inventory.DiskDisappeared, inventory.DiskChanged:
		log.LogAttrs(ctx, slog.LevelInfo, "disk "+e.Kind.String(), diskAttrs(e)...)
	}
}

func peerAttrs(p diskstate.Peer) []slog.Attr {
	attrs := []slog.Attr{slog.String("hostname", present.Escape(p.Hostname)), slog.String("host_id", p.HostID)}
	if p.Address != "" {
		attrs = append(attrs, slog.String("address", p.Address))
	}
	return attrs
}

func diskAttrs(e inventory.Event) []slog.Attr {
	d := e.Disk
	attrs := []slog.Attr{slog.String("host", present.Escape(d.Host())), slog.String("device", present.Escape(d.Device))}
	if d.Label != "" {
		attrs = append(attrs, slog.String("label", present.Escape(d.Label)))
	}
	if d.UUID != "" {
		attrs = append(attrs, slog.String("uuid", present.Escape(d.UUID)))
	}
	if len(e.Changed) > 0 {
		attrs = append(attrs, slog.String("changed", strings.Join(e.Changed, ",")))
	}
	return append(attrs, slog.Bool("local", d.Local))
}

// Limits of the log of peers' changes.
const (
	// DetailDisks is the most disks a peer's change may touch for each of
	// them to get a line of its own as well (a disk plugged in on a peer is
	// worth naming); larger changes get only their summary.
	DetailDisks = 4
	// LinesPerMinute is how many lines of one kind about peers (joined,
	// lost, changed, a peer's disk) are written a minute, after a burst of
	// as many; the rest are counted and the count is told with the next
	// line of that kind that is written.
	LinesPerMinute = 10
)

// Writer writes the inventory's events to a log so that a network cannot
// flood it: this host's disk events one line each, as Log does, and the
// events of each peer summarised into one line per peer and Flush (such
// as "peer beta joined with 16 disks" or "peer beta: 3 disks appeared, 1
// disappeared"), with each disk of a small change named too. Lines about
// peers are rate-limited per kind (LinesPerMinute). A Writer belongs to
// one goroutine.
type Writer struct {
	log     *slog.Logger
	now     func() time.Time
	pending map[string]*peerChange
	order   []string // host ids of pending, in order of their first event
	limits  map[string]*limit
}

// peerChange is what happened to one peer since the last Flush.
type peerChange struct {
	peer                           diskstate.Peer
	joined, lost, rejoined         bool
	reason                         string
	appeared, disappeared, changed int
	detail                         []inventory.Event // the disk events, up to DetailDisks+1
}

// limit is a token bucket of LinesPerMinute lines a minute, and the lines
// it left out since the last one written.
type limit struct {
	tokens  float64
	at      time.Time
	skipped int
}

// NewWriter returns a Writer to log; now is the clock (nil: time.Now).
func NewWriter(log *slog.Logger, now func() time.Time) *Writer {
	if now == nil {
		now = time.Now
	}
	return &Writer{log: log, now: now, pending: map[string]*peerChange{}, limits: map[string]*limit{}}
}

// Add takes one event: this host's disk events are written at once, a
// peer's are kept for Flush.
func (w *Writer) Add(ctx context.Context, e inventory.Event) {
	switch e.Kind {
	case inventory.DiskAppeared, inventory.DiskDisappeared, inventory.DiskChanged:
		if e.Disk.Local {
			Log(ctx, w.log, e)
			return
		}
	case inventory.PeerJoined, inventory.PeerLost:
	default:
		return
	}
	id := e.Peer.HostID
	c := w.pending[id]
	if c == nil {
		c = &peerChange{}
		w.pending[id] = c
		w.order = append(w.order, id)
	}
	c.peer = e.Peer
	switch e.Kind {
	case inventory.PeerJoined:
		c.joined, c.rejoined = true, c.lost
	case inventory.PeerLost:
		c.lost, c.reason = true, e.Reason
	case inventory.DiskAppeared:
		c.appeared++
	case inventory.DiskDisappeared:
		c.disappeared++
	case inventory.DiskChanged:
		c.changed++
	}
	if e.Kind != inventory.PeerJoined && e.Kind != inventory.PeerLost && len(c.detail) <= DetailDisks {
		c.detail = append(c.detail, e)
	}
}

// Pending reports whether Flush has lines to write.
func (w *Writer) Pending() bool { return len(w.order) > 0 }

// Flush writes the lines of the peers' changes kept since the last Flush.
func (w *Writer) Flush(ctx context.Context) {
	for _, id := range w.order {
		c := w.pending[id]
		name := present.Escape(c.peer.Hostname)
		counts := c.counts()
		switch {
		case c.rejoined:
			w.line(ctx, "peer", fmt.Sprintf("peer %s lost (%s) and back with %s", name, c.reason, disks(c.appeared)), c, c.reason)
		case c.joined && c.lost:
			w.line(ctx, "peer", fmt.Sprintf("peer %s joined and was lost (%s)", name, c.reason), c, c.reason)
		case c.joined:
			w.line(ctx, "peer joined", fmt.Sprintf("peer %s joined with %s", name, disks(c.appeared)), c, "")
		case c.lost:
			w.line(ctx, "peer lost", fmt.Sprintf("peer %s lost (%s) with %s", name, c.reason, disks(c.disappeared)), c, c.reason)
		case counts != "":
			w.line(ctx, "peer changed", fmt.Sprintf("peer %s: %s", name, counts), c, "")
		}
		if n := c.appeared + c.disappeared + c.changed; n > 0 && n <= DetailDisks && !c.lost {
			for _, e := range c.detail {
				if w.allow("peer disk") {
					Log(ctx, w.log, e)
				}
			}
		}
		delete(w.pending, id)
	}
	w.order = w.order[:0]
}

// counts says how many disks appeared, disappeared and changed, leaving
// out the kinds of which there were none.
func (c *peerChange) counts() string {
	var parts []string
	for _, k := range []struct {
		n    int
		verb string
	}{{c.appeared, "appeared"}, {c.disappeared, "disappeared"}, {c.changed, "changed"}} {
		if k.n > 0 {
			if len(parts) == 0 {
				parts = append(parts, disks(k.n)+" "+k.verb)
			} else {
				parts = append(parts, fmt.Sprintf("%d %s", k.n, k.verb))
			}
		}
	}
	return strings.Join(parts, ", ")
}

func disks(n int) string {
	if n == 1 {
		return "1 disk"
	}
	return fmt.Sprintf("%d disks", n)
}

// line writes one line about a peer, if the limit of its kind allows.
func (w *Writer) line(ctx context.Context, kind, msg string, c *peerChange, reason string) {
	if !w.allow(kind) {
		return
	}
	attrs := peerAttrs(c.peer)
	attrs = append(attrs, slog.Int("appeared", c.appeared), slog.Int("disappeared", c.disappeared), slog.Int("changed", c.changed))
	if reason != "" {
		attrs = append(attrs, slog.String("reason", reason))
	}
	if l := w.limits[kind]; l.skipped > 0 {
		attrs = append(attrs, slog.Int("suppressed", l.skipped))
		l.skipped = 0
	}
	w.log.LogAttrs(ctx, slog.LevelInfo, msg, attrs...)
}

// allow takes a token of kind's bucket, or counts the line left out.
func (w *Writer) allow(kind string) bool {
	now := w.now()
	l := w.limits[kind]
	if l == nil {
		l = &limit{tokens: LinesPerMinute, at: now}
		w.limits[kind] = l
	}
	l.tokens = min(LinesPerMinute, l.tokens+now.Sub(l.at).Minutes()*LinesPerMinute)
	l.at = now
	if l.tokens < 1 {
		l.skipped++
		return false
	}
	l.tokens--
	return true
}
