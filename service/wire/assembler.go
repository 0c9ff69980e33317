package wire

import (
	"container/list"
	"sync"
	"time"

	"github.com/diskd/diskd/service/diskstate"
)

// Assembler defaults and bounds.
const (
	// DefaultMaxPending is the number of pending sets NewAssembler allows
	// when given maxPending <= 0.
	DefaultMaxPending = 256
	// DefaultPartTTL is how long NewAssembler keeps an incomplete set when
	// given ttl <= 0. Parts are sent back to back, so a set that is not
	// complete after a few seconds never will be.
	DefaultPartTTL = 5 * time.Second
	// MaxPendingParts bounds the parts held across all pending sets, and so
	// the memory of an Assembler: about MaxPendingParts × MaxDatagram bytes
	// at worst, much less with DefaultBudget-sized datagrams.
	MaxPendingParts = 1024
)

// Assembler reassembles announcements split into parts. It keeps at most
// one pending set per sender (HostID, BootID), at most maxPending sets in
// all (evicting the oldest), at most MaxPendingParts parts in all (evicting
// the oldest sets), and drops sets older than ttl, so a flood of fake parts
// cannot make it grow.
//
// An Assembler is safe for concurrent use.
type Assembler struct {
	mu         sync.Mutex
	maxPending int
	ttl        time.Duration
	sets       map[sender]*pendingSet
	order      list.List // of *pendingSet, oldest first
	parts      int       // parts held across all sets
}

type sender struct{ host, boot string }

// pendingSet is an announcement of which some parts have arrived.
type pendingSet struct {
	sender   sender
	gen      uint64 // 0: an older sender's set, grouped by seq alone
	seq      uint64 // the highest of its parts
	created  time.Time
	hostname string
	interval time.Duration
	parts    [][]diskstate.Disk // by part index
	got      []bool             // by part index
	received int
	disks    int
	elem     *list.Element
}

// NewAssembler returns an Assembler that keeps at most maxPending incomplete
// announcements (DefaultMaxPending if maxPending <= 0), each for at most ttl
// (DefaultPartTTL if ttl <= 0).
func NewAssembler(maxPending int, ttl time.Duration) *Assembler {
	if maxPending <= 0 {
		maxPending = DefaultMaxPending
	}
	if ttl <= 0 {
		ttl = DefaultPartTTL
	}
	return &Assembler{maxPending: maxPending, ttl: ttl, sets: make(map[sender]*pendingSet)}
}

// Add takes one decoded announcement part received at now. When it
// completes an announcement, Add returns the whole announcement, with the
// disks of all parts in part order and Part 0, Parts 1, and ok true. A
// single-part announcement is complete at once.
//
// Parts that carry a generation (Gen, which a sender changes only when its
// disk list changes) are grouped by (HostID, BootID, Gen), whatever their
// Seq: the parts of an unchanged list combine across announcements, so a
// part lost in one round is made up by the same part of the next. Parts
// without one (older senders) are grouped by (HostID, BootID, Seq). Then:
//   - a duplicate part is ignored;
//   - a part whose Parts, Hostname or Interval differ from the first part
//     of its set drops the set;
//   - a part of another group than the sender's pending set replaces that
//     set if its Seq is newer than every part of the set, and is ignored
//     (stale) otherwise;
//   - a set whose parts carry more than MaxDisksTotal disks is dropped.
//
// The whole announcement carries the highest Seq of its parts. An
// announcement with a missing part is never returned. Add does not
// remember completed announcements, so the caller must still check Seq
// against the replay rule. Messages that are not valid announcement parts
// are ignored.
//
// A set lives for the ttl, or three of its sender's intervals if longer,
// so that the parts of several rounds can meet.
func (a *Assembler) Add(m Message, now time.Time) (complete Message, ok bool) {
	if m.Kind != KindAnnounce || checkParts(m.Part, m.Parts) != nil || len(m.Disks) > MaxDisksPerPart {
		return Message{}, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.expire(now)

	key := sender{m.HostID, m.BootID}
	s := a.sets[key]
	if s != nil {
		same := m.Gen != 0 && m.Gen == s.gen || m.Gen == 0 && s.gen == 0 && m.Seq == s.seq
		switch {
		case !same && m.Seq <= s.seq:
			return Message{}, false
		case !same:
			a.remove(s)
			s = nil
		case m.Parts != len(s.parts) || m.Hostname != s.hostname || m.Interval != s.interval:
			a.remove(s)
			return Message{}, false
		}
	}
	if m.Parts == 1 {
		m.Part = 0
		return m, true
	}
	if s == nil {
		for len(a.sets) >= a.maxPending || a.parts+1 > MaxPendingParts {
			a.remove(a.order.Front().Value.(*pendingSet))
		}
		s = &pendingSet{
			sender:   key,
			gen:      m.Gen,
			seq:      m.Seq,
			created:  now,
			hostname: m.Hostname,
			interval: m.Interval,
			parts:    make([][]diskstate.Disk, m.Parts),
			got:      make([]bool, m.Parts),
		}
		s.elem = a.order.PushBack(s)
		a.sets[key] = s
	}
	if s.got[m.Part] {
		return Message{}, false
	}
	s.disks += len(m.Disks)
	if s.disks > MaxDisksTotal {
		a.remove(s)
		return Message{}, false
	}
	for a.parts+1 > MaxPendingParts { // evict other sets to make room
		oldest := a.order.Front().Value.(*pendingSet)
		if oldest == s {
			break // s alone holds fewer than MaxParts < MaxPendingParts parts
		}
		a.remove(oldest)
	}
	s.got[m.Part] = true
	s.parts[m.Part] = m.Disks
	s.received++
	s.seq = max(s.seq, m.Seq)
	a.parts++
	if s.received < len(s.parts) {
		return Message{}, false
	}

	a.remove(s)
	var disks []diskstate.Disk
	if s.disks > 0 {
		disks = make([]diskstate.Disk, 0, s.disks)
		for _, p := range s.parts {
			disks = append(disks, p...)
		}
	}
	m.Part, m.Parts, m.Disks, m.Seq = 0, 1, disks, s.seq
	return m, true
}

// Pending returns the number of incomplete announcements held.
func (a *Assembler) Pending() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.sets)
}

// expire drops sets older than their lifetime (the ttl, or three of the
// sender's intervals if longer). Sets are in order of creation; the scan
// stops at the first set still alive, so a set of a short-interval sender
// behind a long-lived one waits for it (the bounds on sets and parts hold
// regardless).
func (a *Assembler) expire(now time.Time) {
	for e := a.order.Front(); e != nil; e = a.order.Front() {
		s := e.Value.(*pendingSet)
		if now.Sub(s.created) <= max(a.ttl, 3*s.interval) {
			return
		}
		a.remove(s)
	}
}

func (a *Assembler) remove(s *pendingSet) {
	a.order.Remove(s.elem)
	delete(a.sets, s.sender)
	a.parts -= s.received
}
