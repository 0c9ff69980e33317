package inventory

import (
	"time"
)

// Mark is the highest message accepted from a host: the daemon instance
// that sent it, its sequence number and its send time (zero when it carried
// none). The replay rule refuses anything at or below a host's mark, also
// after the host has gone; a daemon that saves the marks and restores them
// at start (RestoreMarks) keeps refusing replays across its own restart.
type Mark struct {
	BootID string
	Seq    uint64
	SentAt time.Time
}

// Heard is one datagram from a peer that was decoded and authenticated.
type Heard struct {
	HostID string
	BootID string
	Seq    uint64
	// Part is an announcement's part index (0..254); -1 for a message of
	// one datagram that is not an announcement part (a ping).
	Part   int
	SentAt time.Time // zero: the sender gave none
	// Via is the transport it came on: a copy that another transport
	// delivered first is ErrDuplicate, not ErrReplay.
	Via string
}

// partSet is a set of part indexes 0..255.
type partSet [4]uint64

// allParts holds every part: an announcement applied whole.
var allParts = partSet{^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)}

func (p *partSet) has(i int) bool { return p[i>>6]&(1<<(i&63)) != 0 }
func (p *partSet) add(i int)      { p[i>>6] |= 1 << (i & 63) }

// Hear applies the replay rule to one datagram and, when it passes, keeps
// the peer alive: whatever a datagram carries, accepting it proves the peer
// was there. The rule: per host, a datagram must carry a higher sequence
// number than any accepted before (also before the host left, and as
// restored), or, for an announcement part of a peer held, the same sequence
// number and daemon instance as the highest and a part not accepted with it
// yet (the parts of one announcement share their sequence number). So every
// datagram is accepted at most once.
//
// It reports whether the inventory holds the peer; it returns ErrSelf or
// ErrReplay (and changes nothing) when the datagram is refused. Unknown
// hosts are not added: only an announcement makes a peer (Update).
func (inv *Inventory) Hear(h Heard) (live bool, err error) {
	now := inv.opts.Now()
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if h.HostID == inv.opts.HostID {
		return false, ErrSelf
	}
	part := h.Part >= 0 && h.Part < 256
	ps, live := inv.peers[h.HostID]
	if live && h.BootID == ps.info.BootID {
		switch {
		case h.Seq > ps.info.Seq:
			ps.info.Seq, ps.sentAt, ps.parts = h.Seq, h.SentAt, partSet{}
			inv.signalLocked(marksOf)
		case h.Seq == ps.info.Seq && part && !ps.parts.has(h.Part):
		default:
			if ps.heardVia(h.Via, h.Seq, h.Part) {
				inv.stats.Duplicates++
				return true, ErrDuplicate
			}
			inv.stats.Replays++
			return true, ErrReplay
		}
		if part {
			ps.parts.add(h.Part)
		}
		ps.heardVia(h.Via, h.Seq, h.Part)
		ps.info.LastHeard = now
		return true, nil
	}
	// Another instance of a peer held (restarted; or, without a key,
	// anyone): it must move past the peer's mark, but does not move the
	// mark until its announcement is whole (Update), so that its parts
	// alone cannot lock the instance held out.
	if live && h.Seq <= ps.info.Seq {
		inv.stats.Replays++
		return true, ErrReplay
	}
	if m, dead := inv.tombs.get(h.HostID); !live && dead && h.Seq <= m.Seq {
		inv.stats.Replays++
		return false, ErrReplay
	}
	// Until then, its announcement parts are accepted once each, remembered
	// in a small bounded table.
	if part && !inv.pendingLocked(&h) {
		inv.stats.Replays++
		return live, ErrReplay
	}
	if live {
		ps.info.LastHeard = now
	}
	return live, nil
}

// pendingLocked records an announcement part of a host instance not held
// and reports whether it is new: a higher sequence number than the last
// seen of that host, or the same with a part not seen yet.
func (inv *Inventory) pendingLocked(h *Heard) bool {
	pm, ok := inv.pending[h.HostID]
	switch {
	case !ok || h.Seq > pm.Seq:
		if !ok && len(inv.pending) >= maxPendingMarks {
			for id := range inv.pending { // forget any one
				delete(inv.pending, id)
				break
			}
		}
		pm = &pendingMark{Seq: h.Seq, BootID: h.BootID}
		inv.pending[h.HostID] = pm
	case h.Seq < pm.Seq || h.BootID != pm.BootID || pm.parts.has(h.Part):
		return false
	}
	pm.parts.add(h.Part)
	return true
}

// maxPendingMarks bounds the hosts not held yet whose announcement parts
// are remembered.
const maxPendingMarks = 1024

// pendingMark is the highest sequence number of a host not held yet, and
// the announcement parts accepted with it.
type pendingMark struct {
	Seq    uint64
	BootID string
	parts  partSet
}

// Update applies a peer's whole announcement whose datagrams Hear admitted
// one by one (a.Seq is the highest of theirs, and is not checked again):
// it replaces that peer's disk list, adding the peer if new, and publishes
// what changed. The peer's mark never moves back. It returns ErrSelf,
// ErrPeerCap or ErrDiskCap (and changes nothing) when the announcement is
// refused, and ErrReplay when a.Seq is not above a departed host's mark
// (the host left between Hear and Update).
func (inv *Inventory) Update(a Announcement) error {
	now := inv.opts.Now()
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if a.HostID == inv.opts.HostID {
		return ErrSelf
	}
	ps, live := inv.peers[a.HostID]
	if !live {
		if m, dead := inv.tombs.get(a.HostID); dead && a.Seq <= m.Seq {
			inv.stats.Replays++
			return ErrReplay
		}
	}
	var sentAt time.Time
	var parts partSet
	if live && ps.info.BootID == a.BootID {
		sentAt, parts = ps.sentAt, ps.parts
	} else if pm, ok := inv.pending[a.HostID]; ok {
		if pm.Seq == a.Seq && pm.BootID == a.BootID {
			parts = pm.parts
		}
		delete(inv.pending, a.HostID)
	}
	if err := inv.applyLocked(&a, now); err != nil {
		return err
	}
	ps = inv.peers[a.HostID]
	ps.sentAt, ps.parts = sentAt, parts
	return nil
}

// Marks returns the mark of every host heard from: the peers held and the
// departed ones still remembered (at most MaxTombstones), for saving.
func (inv *Inventory) Marks() map[string]Mark {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	out := make(map[string]Mark, len(inv.peers)+inv.tombs.len())
	inv.tombs.each(func(id string, m Mark) { out[id] = m })
	for id, ps := range inv.peers {
		out[id] = Mark{BootID: ps.info.BootID, Seq: ps.info.Seq, SentAt: ps.sentAt}
	}
	return out
}

// RestoreMarks restores saved marks, as a daemon does at start: each is
// treated like the tombstone of a departed host, so the replay rule
// refuses every datagram of that host at or below it. A mark lower than
// one already held, and the mark of our own host id, are ignored; at most
// MaxTombstones are kept (the rest are forgotten as tombstones are).
func (inv *Inventory) RestoreMarks(marks map[string]Mark) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	for id, m := range marks {
		if id == inv.opts.HostID {
			continue
		}
		if ps, live := inv.peers[id]; live {
			if m.Seq > ps.info.Seq {
				ps.info.Seq, ps.info.BootID, ps.sentAt, ps.parts = m.Seq, m.BootID, m.SentAt, allParts
			}
			continue
		}
		if old, ok := inv.tombs.get(id); ok && old.Seq >= m.Seq {
			continue
		}
		inv.tombs.remember(id, m)
	}
}

// viaMark is the highest message a transport delivered from a peer: its
// sequence number and parts (index 255: a message that is not a part).
type viaMark struct {
	seq   uint64
	parts partSet
}

// heardVia records that transport via delivered message seq, part (-1:
// not a part) of the peer and reports whether that transport had not
// delivered it before (so that a copy refused as already applied came
// through another transport: a duplicate). An empty via records nothing.
func (ps *peerState) heardVia(via string, seq uint64, part int) bool {
	if via == "" {
		return false
	}
	if part < 0 || part > 254 {
		part = 255
	}
	m := ps.via[via]
	if m == nil {
		m = &viaMark{}
		ps.via[via] = m
		ps.info.Via = ps.viaNames()
	}
	switch {
	case seq > m.seq:
		*m = viaMark{seq: seq}
	case seq < m.seq || m.parts.has(part):
		return false
	}
	m.parts.add(part)
	return true
}
