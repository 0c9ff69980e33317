package store

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

type diskEntry struct {
	rec *diskRec
	age *ageItem
}

// hostEntry is one host that places refer to.
type hostEntry struct {
	ref      uint32
	hostname string
	uses     int // places referring to it
}

type peerEntry struct {
	rec *peerRec
	age *ageItem
}

// core is the in-memory view both implementations share: every write
// lands here at once, every read is answered from here. With persist set
// it also tracks which records changed since the last commit.
type core struct {
	opts Options

	mu        sync.RWMutex
	disks     map[string]*diskEntry
	dage      ageIndex
	peers     map[string]*peerEntry
	page      ageIndex
	hosts     map[string]*hostEntry // by host id
	hostIDs   map[uint32]string     // host id by hostEntry.ref
	nextRef   uint32
	present   int
	presentOn map[string]map[string]struct{} // keys of present disks by host id
	presentAt map[string]string              // key of the present disk by place
	evicted   uint64
	closed    bool

	persist   bool
	dirtyFull map[string]struct{} // disks to write whole (or delete when gone)
	dirtySeen map[string]struct{} // disks whose last-seen time alone moved
	dirtyPeer map[string]struct{} // peers to write (or delete when gone)
	dirtyHost map[string]struct{} // hosts to write (or delete when unused)
}

func newCore(opts Options, persist bool) *core {
	c := &core{
		opts:      opts,
		disks:     make(map[string]*diskEntry),
		peers:     make(map[string]*peerEntry),
		hosts:     make(map[string]*hostEntry),
		hostIDs:   make(map[uint32]string),
		presentOn: make(map[string]map[string]struct{}),
		presentAt: make(map[string]string),
		nextRef:   1,
		persist:   persist,
	}
	c.resetDirty()
	return c
}

func (c *core) resetDirty() {
	c.dirtyFull = make(map[string]struct{})
	c.dirtySeen = make(map[string]struct{})
	c.dirtyPeer = make(map[string]struct{})
	c.dirtyHost = make(map[string]struct{})
}

func (c *core) markHost(id string) {
	if c.persist {
		c.dirtyHost[id] = struct{}{}
	}
}

// hostRef returns the number of the host, adding it when new, and
// records its latest hostname.
func (c *core) hostRef(id, hostname string) uint32 {
	h := c.hosts[id]
	if h == nil {
		h = &hostEntry{ref: c.nextRef}
		c.nextRef++
		c.hosts[id] = h
		c.hostIDs[h.ref] = id
		c.markHost(id)
	}
	if h.hostname != hostname {
		h.hostname = hostname
		c.markHost(id)
	}
	return h.ref
}

// use counts places referring to a host; an unused host is removed.
func (c *core) use(ref uint32, delta int) {
	id := c.hostIDs[ref]
	h := c.hosts[id]
	h.uses += delta
	if h.uses <= 0 {
		delete(c.hosts, id)
		delete(c.hostIDs, ref)
		c.markHost(id)
	}
}

func (c *core) hostname(id string) string {
	if h := c.hosts[id]; h != nil {
		return h.hostname
	}
	return ""
}

// place returns a place's host id and hostname.
func (c *core) place(p placeRec) (hostID, hostname string) {
	id := c.hostIDs[p.Host]
	return id, c.hostname(id)
}

func (c *core) markDisk(key string, full bool) {
	if !c.persist {
		return
	}
	if full {
		c.dirtyFull[key] = struct{}{}
		delete(c.dirtySeen, key)
	} else if _, ok := c.dirtyFull[key]; !ok {
		c.dirtySeen[key] = struct{}{}
	}
}

func (c *core) markPeer(key string) {
	if c.persist {
		c.dirtyPeer[key] = struct{}{}
	}
}

// urgent is the number of pending changes that count towards BatchSize.
func (c *core) urgent() int { return len(c.dirtyFull) + len(c.dirtyPeer) + len(c.dirtyHost) }

func sec(ns int64) int64 { return ns / int64(time.Second) }

func checkTime(what string, t time.Time) error {
	if t.UnixNano() <= 0 || t.Year() > 2200 {
		return fmt.Errorf("%w: %s %s is out of range", ErrInvalid, what, t.Format(time.RFC3339))
	}
	return nil
}

// addDisk inserts a new record; the caller makes room first (loading
// does not: it applies MaxEntries after everything is in, so that the
// globally oldest go, not the oldest of what was loaded so far).
func (c *core) addDisk(key string, r *diskRec) {
	c.disks[key] = &diskEntry{rec: r, age: c.dage.add(key, r.Last)}
	if r.Present {
		c.setPresent(key, r, true)
	}
}

// placeKey names a place (host id and device) in presentAt.
func placeKey(hostID, device string) string { return hostID + "\x00" + device }

// setPresent keeps the count and the indexes of present disks, for r at
// its current place.
func (c *core) setPresent(key string, r *diskRec, on bool) {
	hostID, place := r.HostID, placeKey(r.HostID, r.Device)
	keys := c.presentOn[hostID]
	if on {
		c.presentAt[place] = key
		if keys == nil {
			keys = make(map[string]struct{})
			c.presentOn[hostID] = keys
		}
		keys[key] = struct{}{}
		c.present++
		return
	}
	delete(keys, key)
	if len(keys) == 0 {
		delete(c.presentOn, hostID)
	}
	if c.presentAt[place] == key {
		delete(c.presentAt, place)
	}
	c.present--
}

func (c *core) removeDisk(key string) {
	e := c.disks[key]
	delete(c.disks, key)
	c.dage.remove(e.age)
	for _, p := range e.rec.Places {
		c.use(p.Host, -1)
	}
	if e.rec.Present {
		c.setPresent(key, e.rec, false)
	}
	c.evicted++
	c.markDisk(key, true)
}

// addPeer inserts a new peer; like addDisk, the caller makes room.
func (c *core) addPeer(key string, r *peerRec) {
	c.peers[key] = &peerEntry{rec: r, age: c.page.add(key, r.Heard)}
}

func (c *core) removePeer(key string) {
	e := c.peers[key]
	delete(c.peers, key)
	c.page.remove(e.age)
	c.evicted++
	c.markPeer(key)
}

// prune removes what is older than MaxAge and then the oldest beyond
// MaxEntries. It returns how many records it removed.
func (c *core) prune(now time.Time) int {
	cutoff := now.Add(-c.opts.MaxAge).UnixNano()
	n := 0
	for it := c.dage.oldest(); it != nil && (it.t < cutoff || len(c.disks) > c.opts.MaxEntries); it = c.dage.oldest() {
		c.removeDisk(it.key)
		n++
	}
	for it := c.page.oldest(); it != nil && (it.t < cutoff || len(c.peers) > c.opts.MaxEntries); it = c.page.oldest() {
		c.removePeer(it.key)
		n++
	}
	return n
}

// placeIndex returns the index of the place (host, device) in r.Places,
// adding it when new (then added is true).
func (r *diskRec) placeIndex(host uint32, device string) (i uint16, added bool) {
	for i := range r.Places {
		if r.Places[i].Host == host && r.Places[i].Device == device {
			return uint16(i), false
		}
	}
	r.Places = append(r.Places, placeRec{Host: host, Device: device})
	return uint16(len(r.Places) - 1), true
}

// trim keeps the newest max sightings and drops places no longer used;
// it returns the dropped places.
func (r *diskRec) trim(max int) (dropped []placeRec) {
	if len(r.Sightings) <= max {
		return nil
	}
	r.Sightings = r.Sightings[:max:max]
	remap := make([]int, len(r.Places))
	for i := range remap {
		remap[i] = -1
	}
	var places []placeRec
	for i, s := range r.Sightings {
		if remap[s.Place] < 0 {
			remap[s.Place] = len(places)
			places = append(places, r.Places[s.Place])
		}
		r.Sightings[i].Place = uint16(remap[s.Place])
	}
	for i, p := range r.Places {
		if remap[i] < 0 {
			dropped = append(dropped, p)
		}
	}
	r.Places = places
	return dropped
}

// setFields copies the reported attributes; it says whether any changed.
func (r *diskRec) setFields(d DiskInfo) bool {
	changed := r.Label != d.Label || r.Type != d.Type ||
		r.UUID != d.UUID || r.PartUUID != d.PartUUID || !slices.Equal(r.Mounts, d.MountPoints)
	if changed {
		r.Label, r.Type, r.UUID, r.PartUUID = d.Label, d.Type, d.UUID, d.PartUUID
		r.Mounts = slices.Clone(d.MountPoints)
	}
	return changed
}

// vacate ends the presence of any other disk at the place (host id,
// device): a device holds one filesystem at a time, so a disk reported
// there replaces whatever was reported there before.
func (c *core) vacate(ns int64, key, hostID, device string) {
	if k, ok := c.presentAt[placeKey(hostID, device)]; ok && k != key {
		c.gone(ns, must(reasonCode(ReasonDetached)), c.disks[k], k)
	}
}

func (c *core) seen(ns int64, d DiskInfo) {
	key := Identity(d)
	e := c.disks[key]
	if e == nil || !e.rec.Present || e.rec.HostID != d.HostID || e.rec.Device != d.Device {
		c.vacate(ns, key, d.HostID, d.Device)
	}
	if e == nil {
		for len(c.disks) >= c.opts.MaxEntries { // before hostRef: eviction may drop hosts
			c.removeDisk(c.dage.oldest().key)
		}
		ref := c.hostRef(d.HostID, d.Hostname)
		c.use(ref, 1)
		r := &diskRec{HostID: d.HostID, Device: d.Device, First: ns, Last: ns, Present: true,
			Places:    []placeRec{{Host: ref, Device: d.Device}},
			Sightings: []sightRec{{From: sec(ns), Until: sec(ns)}}}
		r.setFields(d)
		c.addDisk(key, r)
		c.markDisk(key, true)
		return
	}
	ref := c.hostRef(d.HostID, d.Hostname)
	r := e.rec
	ns = max(ns, r.Last) // never move time backwards
	full := false
	if r.Present && r.HostID == d.HostID && r.Device == d.Device {
		full = r.setFields(d)
	} else {
		if r.Present { // it turned up elsewhere: the old sighting ends
			r.Sightings[0].Reason = must(reasonCode(ReasonDetached))
			c.setPresent(key, r, false)
		}
		r.Present, r.GoneAt, r.Reason = true, 0, 0
		r.HostID, r.Device = d.HostID, d.Device
		c.setPresent(key, r, true)
		r.setFields(d)
		p, added := r.placeIndex(ref, d.Device)
		if added {
			c.use(ref, 1)
		}
		r.Sightings = slices.Insert(r.Sightings, 0, sightRec{From: sec(ns), Place: p})
		for _, p := range r.trim(c.opts.MaxSightings) {
			c.use(p.Host, -1)
		}
		full = true
	}
	r.Last = ns
	r.Sightings[0].Until = sec(ns)
	c.dage.update(e.age, ns)
	c.markDisk(key, full)
}

func must(c uint8, _ bool) uint8 { return c }

func (c *core) gone(ns int64, code uint8, e *diskEntry, key string) {
	r := e.rec
	r.Present = false
	r.GoneAt = max(ns, r.Last)
	r.Reason = code
	r.Sightings[0].Reason = code
	r.Sightings[0].Until = sec(r.Last)
	c.setPresent(key, r, false)
	c.markDisk(key, true)
}

// write runs fn under the lock after checking the store is open.
func (c *core) write(fn func()) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	fn()
	return nil
}

func (c *core) Seen(at time.Time, disks ...DiskInfo) error {
	if err := checkTime("seen time", at); err != nil {
		return err
	}
	for _, d := range disks {
		if err := checkDisk(d); err != nil {
			return err
		}
	}
	return c.write(func() {
		for _, d := range disks {
			c.seen(at.UnixNano(), d)
		}
	})
}

func (c *core) Gone(at time.Time, reason GoneReason, disks ...DiskInfo) error {
	if err := checkTime("gone time", at); err != nil {
		return err
	}
	if err := checkReason(reason); err != nil {
		return err
	}
	for _, d := range disks {
		if err := checkDisk(d); err != nil {
			return err
		}
	}
	code, _ := reasonCode(reason)
	return c.write(func() {
		for _, d := range disks {
			key := Identity(d)
			if e := c.disks[key]; e != nil && e.rec.Present && e.rec.HostID == d.HostID && e.rec.Device == d.Device {
				c.gone(at.UnixNano(), code, e, key)
			}
		}
	})
}

func (c *core) HostGone(at time.Time, reason GoneReason, hostID string) error {
	if err := checkTime("gone time", at); err != nil {
		return err
	}
	if err := checkReason(reason); err != nil {
		return err
	}
	code, _ := reasonCode(reason)
	return c.write(func() {
		for _, key := range slices.Collect(maps.Keys(c.presentOn[hostID])) {
			c.gone(at.UnixNano(), code, c.disks[key], key)
		}
	})
}

func (c *core) Heard(peers ...Peer) error {
	for _, p := range peers {
		if err := checkPeer(p); err != nil {
			return err
		}
		if err := checkTime("last heard time of peer "+p.HostID, p.LastHeard); err != nil {
			return err
		}
	}
	return c.write(func() {
		for _, p := range peers {
			r := &peerRec{Hostname: p.Hostname, Addr: p.Addr, Heard: p.LastHeard.UnixNano(),
				BootID: p.Mark.BootID, Seq: p.Mark.Seq}
			if !p.Mark.SentAt.IsZero() {
				r.SentAt = p.Mark.SentAt.UnixNano()
			}
			if e := c.peers[p.HostID]; e != nil {
				e.rec = r
				c.page.update(e.age, r.Heard)
			} else {
				for len(c.peers) >= c.opts.MaxEntries {
					c.removePeer(c.page.oldest().key)
				}
				c.addPeer(p.HostID, r)
			}
			c.markPeer(p.HostID)
		}
	})
}

// prune applies retention under the lock.
func (c *core) pruneNow() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.prune(c.opts.Now())
}

func nsTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

func secTime(s int64) time.Time { return time.Unix(s, 0).UTC() }

func (c *core) disk(key string, r *diskRec) Disk {
	d := Disk{Key: key, HostID: r.HostID, Hostname: c.hostname(r.HostID), Device: r.Device, Label: r.Label,
		Type: r.Type, UUID: r.UUID, PartUUID: r.PartUUID, MountPoints: slices.Clone(r.Mounts),
		FirstSeen: nsTime(r.First), LastSeen: nsTime(r.Last), Present: r.Present,
		GoneAt: nsTime(r.GoneAt), GoneReason: reasonOf(r.Reason)}
	if d.MountPoints == nil {
		d.MountPoints = []string{}
	}
	d.Sightings = make([]Sighting, len(r.Sightings))
	for i, s := range r.Sightings {
		d.Sightings[i] = c.sighting(r, s)
	}
	return d
}

func (c *core) sighting(r *diskRec, s sightRec) Sighting {
	p := r.Places[s.Place]
	id, name := c.place(p)
	return Sighting{HostID: id, Hostname: name, Device: p.Device,
		From: secTime(s.From), Until: secTime(s.Until), Reason: reasonOf(s.Reason)}
}

func (c *core) Disk(key string) (Disk, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if e := c.disks[key]; e != nil {
		return c.disk(key, e.rec), true
	}
	return Disk{}, false
}

func sortDisks(ds []Disk) {
	slices.SortFunc(ds, func(a, b Disk) int {
		if c := b.LastSeen.Compare(a.LastSeen); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
}

func (c *core) Disks() []Disk {
	c.mu.RLock()
	ds := make([]Disk, 0, len(c.disks))
	for k, e := range c.disks {
		ds = append(ds, c.disk(k, e.rec))
	}
	c.mu.RUnlock()
	sortDisks(ds)
	return ds
}

// Match tiers: how well a term matches a set of fields.
const (
	noMatch = iota
	containsMatch
	prefixMatch
	exactMatch
)

// tier returns the best tier of term (already lower case) against f.
func tier(lterm string, asciiTerm bool, f string) int {
	if asciiTerm && isASCII(f) {
		return tierASCII(lterm, f)
	}
	if strings.EqualFold(f, lterm) {
		return exactMatch
	}
	lf := strings.ToLower(f)
	switch {
	case strings.HasPrefix(lf, lterm):
		return prefixMatch
	case strings.Contains(lf, lterm):
		return containsMatch
	}
	return noMatch
}

// tierASCII is tier for ASCII strings, without allocating.
func tierASCII(lterm, f string) int {
	m := len(lterm)
	switch {
	case m > len(f):
		return noMatch
	case !foldedASCII(f[:m], lterm):
	case m == len(f):
		return exactMatch
	default:
		return prefixMatch
	}
	for i := 1; i+m <= len(f); i++ {
		if foldedASCII(f[i:i+m], lterm) {
			return containsMatch
		}
	}
	return noMatch
}

// foldedASCII says whether s, in lower case, is lower.
func foldedASCII(s, lower string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func (c *core) tier(r *diskRec, lterm string, asciiTerm, places bool) int {
	best := noMatch
	for _, f := range [...]string{r.UUID, r.PartUUID, r.Label, r.Device, c.hostname(r.HostID), r.HostID} {
		best = max(best, tier(lterm, asciiTerm, f))
	}
	if places {
		for _, p := range r.Places {
			id, name := c.place(p)
			for _, f := range [...]string{id, name, p.Device} {
				best = max(best, tier(lterm, asciiTerm, f))
			}
		}
	}
	return best
}

// matching returns the keys of the disks in the best tier for term.
func (c *core) matching(term string, places bool) []string {
	lterm := strings.ToLower(term)
	if lterm == "" {
		return nil
	}
	asciiTerm := isASCII(lterm)
	best := noMatch
	var keys []string
	for k, e := range c.disks {
		t := c.tier(e.rec, lterm, asciiTerm, places)
		switch {
		case t == noMatch || t < best:
		case t > best:
			best = t
			keys = append(keys[:0], k)
		default:
			keys = append(keys, k)
		}
	}
	return keys
}

func (c *core) Find(term string) []Disk {
	c.mu.RLock()
	keys := c.matching(term, false)
	ds := make([]Disk, 0, len(keys))
	for _, k := range keys {
		ds = append(ds, c.disk(k, c.disks[k].rec))
	}
	c.mu.RUnlock()
	sortDisks(ds)
	return ds
}

func (c *core) History(term string) []HistoryEntry {
	c.mu.RLock()
	var hs []HistoryEntry
	for _, k := range c.matching(term, true) {
		r := c.disks[k].rec
		for _, s := range r.Sightings {
			hs = append(hs, HistoryEntry{Key: k, UUID: r.UUID, PartUUID: r.PartUUID, Label: r.Label,
				Type: r.Type, Sighting: c.sighting(r, s)})
		}
	}
	c.mu.RUnlock()
	slices.SortFunc(hs, func(a, b HistoryEntry) int {
		if c := b.From.Compare(a.From); c != 0 {
			return c
		}
		if c := b.Until.Compare(a.Until); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	return hs
}

func (r *peerRec) peer(hostID string) Peer {
	return Peer{HostID: hostID, Hostname: r.Hostname, Addr: r.Addr, LastHeard: nsTime(r.Heard),
		Mark: Mark{BootID: r.BootID, Seq: r.Seq, SentAt: nsTime(r.SentAt)}}
}

func (c *core) Peer(hostID string) (Peer, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if e := c.peers[hostID]; e != nil {
		return e.rec.peer(hostID), true
	}
	return Peer{}, false
}

func (c *core) Peers() []Peer {
	c.mu.RLock()
	ps := make([]Peer, 0, len(c.peers))
	for k, e := range c.peers {
		ps = append(ps, e.rec.peer(k))
	}
	c.mu.RUnlock()
	slices.SortFunc(ps, func(a, b Peer) int { return cmp.Compare(a.HostID, b.HostID) })
	return ps
}

func (c *core) stats() Stats {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return Stats{Disks: len(c.disks), Present: c.present, Peers: len(c.peers),
		Pending: len(c.dirtyFull) + len(c.dirtySeen) + len(c.dirtyPeer) + len(c.dirtyHost), Evicted: c.evicted}
}

// Memory is a Store that keeps everything in memory only: for tests and
// for running without a state directory. It has no goroutines.
type Memory struct{ *core }

// NewMemory returns an empty memory store.
func NewMemory(opts Options) *Memory {
	return &Memory{newCore(opts.withDefaults(), false)}
}

// Flush has nothing to write.
func (m *Memory) Flush(context.Context) error { return nil }

// Maintain applies retention.
func (m *Memory) Maintain(context.Context) error {
	m.pruneNow()
	return nil
}

// Stats reports counters.
func (m *Memory) Stats() Stats { return m.stats() }

// Close makes later writes fail.
func (m *Memory) Close() error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	return nil
}

var _ Store = (*Memory)(nil)
