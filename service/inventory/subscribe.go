package inventory

import "sync/atomic"

// DefaultSubscriptionBuffer is the event buffer of a subscription made with
// a buffer size of zero or less.
const DefaultSubscriptionBuffer = 4096

// Subscription receives the inventory's change events in the order they
// happened. Delivery never blocks the inventory: when a subscriber falls so
// far behind that its buffer is full, further events are dropped for it and
// counted (Dropped), and the inventory's EventsDropped counter grows. A
// subscriber that must not miss anything can compare against a fresh
// snapshot (Disks, Peers) when Dropped moves.
//
// Events are delivered by pointer, and every subscriber receives the same
// one: a subscriber reads an event and must not change it. (An event is
// about 600 bytes, so a buffer of events by value cost 2.4 MB a
// subscriber, always; pointers cost 32 KB, and an event's memory only
// while it is pending.)
//
// Beside events, a subscription carries two signals for what changes too
// often to be an event: Marks and Scans. Each holds at most one pending
// value, so a signal sent while one is pending is folded into it and the
// inventory never waits. A subscriber that saves marks or shows the scan
// state waits on them instead of polling, and a daemon on a quiet network
// sleeps.
type Subscription struct {
	inv          *Inventory
	ch           chan *Event
	marks, scans chan struct{}
	dropped      atomic.Uint64
}

// Subscribe returns a subscription with room for buffer pending events.
// Close it when done.
func (inv *Inventory) Subscribe(buffer int) *Subscription {
	if buffer <= 0 {
		buffer = DefaultSubscriptionBuffer
	}
	s := &Subscription{inv: inv, ch: make(chan *Event, buffer),
		marks: make(chan struct{}, 1), scans: make(chan struct{}, 1)}
	inv.mu.Lock()
	inv.subs[s] = struct{}{}
	inv.mu.Unlock()
	return s
}

// C delivers the events, shared with the other subscribers: read them,
// never change them. It is closed by Close.
func (s *Subscription) C() <-chan *Event { return s.ch }

// Marks has a value when a host's mark (see Marks) has moved since the
// last value was received. It is never closed.
func (s *Subscription) Marks() <-chan struct{} { return s.marks }

// Scans has a value when a local scan was recorded (see Scan) since the
// last value was received. It is never closed.
func (s *Subscription) Scans() <-chan struct{} { return s.scans }

// Dropped counts the events this subscriber missed because its buffer was full.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Close ends the subscription and closes C. It may be called more than once.
func (s *Subscription) Close() {
	s.inv.mu.Lock()
	defer s.inv.mu.Unlock()
	if _, ok := s.inv.subs[s]; ok {
		delete(s.inv.subs, s)
		close(s.ch)
	}
}

// signalLocked sends the signal that pick chooses to every subscriber
// that has none pending.
func (inv *Inventory) signalLocked(pick func(*Subscription) chan struct{}) {
	for s := range inv.subs {
		select {
		case pick(s) <- struct{}{}:
		default:
		}
	}
}

func marksOf(s *Subscription) chan struct{} { return s.marks }
func scansOf(s *Subscription) chan struct{} { return s.scans }

func (inv *Inventory) publishLocked(e *Event) {
	for s := range inv.subs {
		select {
		case s.ch <- e:
		default:
			s.dropped.Add(1)
			inv.stats.EventsDropped++
		}
	}
}
