package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// sighting is what an observer last saw of one disk (by label).
type sighting struct {
	known   bool
	present bool
	at      time.Time // when this state was first seen
}

// sightings records, for each label, since when it has been seen present
// or absent, and wakes up those who wait for a change.
type sightings struct {
	mu      sync.Mutex
	seen    map[string]sighting
	changed chan struct{} // closed and replaced at every change
	err     error         // the observer's last error, for timeouts
}

func newSightings() *sightings {
	return &sightings{seen: map[string]sighting{}, changed: make(chan struct{})}
}

// set records label's state as seen at at; it is a change only when the
// state differs from the last one seen.
func (s *sightings) set(label string, present bool, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setLocked(label, present, at)
}

func (s *sightings) setLocked(label string, present bool, at time.Time) {
	if old := s.seen[label]; old.known && old.present == present {
		return
	}
	s.seen[label] = sighting{known: true, present: present, at: at}
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *sightings) setErr(err error) {
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
}

// wait returns when label was first seen in state present at or after t0,
// waiting at most timeout for it.
func (s *sightings) wait(ctx context.Context, label string, present bool, t0 time.Time, timeout time.Duration) (time.Time, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		got, ch, lastErr := s.seen[label], s.changed, s.err
		s.mu.Unlock()
		if got.known && got.present == present && !got.at.Before(t0) {
			return got.at, nil
		}
		select {
		case <-ch:
		case <-deadline.C:
			state := "present"
			if !present {
				state = "gone"
			}
			if lastErr != nil {
				return time.Time{}, fmt.Errorf("%s not %s within %v (observer: %w)", label, state, timeout, lastErr)
			}
			return time.Time{}, fmt.Errorf("%s not %s within %v", label, state, timeout)
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}

// ctlWatcher is an observer on a daemon's control socket: it sends
// `list --json PATTERN` over one connection every `every` and records
// which of the labels of one host the answer holds. A disk counts as seen
// when the answer that lists it (or no longer lists it) has arrived: the
// latency includes the request, never less than what a client sees.
type ctlWatcher struct {
	*sightings
	socket  string
	pattern string
	hostID  string
	labels  []string
	every   time.Duration
}

func newCtlWatcher(socket, pattern, hostID string, labels []string, every time.Duration) *ctlWatcher {
	return &ctlWatcher{sightings: newSightings(), socket: socket, pattern: pattern, hostID: hostID,
		labels: labels, every: every}
}

// run polls until ctx ends, reconnecting when the connection breaks.
func (w *ctlWatcher) run(ctx context.Context) {
	var c *ctlConn
	defer func() {
		if c != nil {
			c.close()
		}
	}()
	cmd := "list --json " + w.pattern
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		t.Reset(w.every)
		if c == nil {
			var err error
			if c, err = dialCtl(w.socket, time.Second); err != nil {
				w.setErr(err)
				continue
			}
		}
		body, _, err := c.do(cmd, 5*time.Second, true)
		at := time.Now()
		if err != nil {
			w.setErr(err)
			c.close()
			c = nil
			continue
		}
		var ds []diskJSON
		if err := json.Unmarshal(bytes.TrimSpace(body), &ds); err != nil {
			w.setErr(fmt.Errorf("list --json: %w", err))
			continue
		}
		present := map[string]bool{}
		for _, d := range ds {
			if d.HostID == w.hostID {
				present[d.Label] = true
			}
		}
		w.mu.Lock()
		for _, l := range w.labels {
			w.setLocked(l, present[l], at)
		}
		w.err = nil
		w.mu.Unlock()
	}
}
