// Package inventory is diskd's one piece of shared state: the disks of this
// host, the peers heard on the network and their disks, and the stream of
// change events (disk appeared, disappeared, changed; peer joined, lost) that
// the control socket, the D-Bus API and the announcer subscribe to.
//
// It is not a scanner and not a network endpoint: the scan loop hands it the
// local disk list, the multicast receiver hands it peers' announcements, and it
// decides what changed. It enforces the receive-side rules that need memory of
// the past: a peer's sequence numbers must move forward (replays are dropped,
// also after the peer has gone; Hear applies the rule to each datagram and
// keeps the peer alive, and the marks it keeps can be saved and restored
// across a restart with Marks and RestoreMarks), and the number of peers and
// of disks per peer is capped so that a rogue sender cannot exhaust memory.
//
// Identity of a disk: within one host, a disk is its device path together with
// its filesystem UUID. A new filesystem on the same device (reformatted) is a
// disk that disappeared and another that appeared; a new label or new mount
// points on the same filesystem is a change.
//
// All methods are safe for concurrent use.
package inventory

import (
	"cmp"
	"errors"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/diskd/diskd/service/defaults"
	"github.com/diskd/diskd/service/diskstate"
)

// EventKind says what changed.
type EventKind int

// The kinds of change events.
const (
	DiskAppeared EventKind = iota + 1
	DiskDisappeared
	DiskChanged
	PeerJoined
	PeerLost
)

func (k EventKind) String() string {
	switch k {
	case DiskAppeared:
		return "appeared"
	case DiskDisappeared:
		return "disappeared"
	case DiskChanged:
		return "changed"
	case PeerJoined:
		return "peer-joined"
	case PeerLost:
		return "peer-lost"
	}
	return "unknown"
}

// Reasons a peer is lost.
const (
	ReasonBye     = "bye"     // it said goodbye on a clean stop
	ReasonTimeout = "timeout" // not heard from within its timeout, or declared dead by a transport
)

// Event is one change. Disk is set for disk events, Peer for peer events (and,
// for a remote disk event, the peer that owns the disk).
type Event struct {
	Kind EventKind
	Disk diskstate.Disk
	Peer diskstate.Peer
	// Reason is why a peer was lost (PeerLost, and the DiskDisappeared
	// events of that peer's disks that come before it); empty otherwise.
	Reason string
	// Changed names, for DiskChanged, the fields that changed (their JSON
	// keys, as diskstate.ChangedFields gives them).
	Changed []string
}

// Options bound the inventory. Zero values take the defaults.
type Options struct {
	HostID   string
	Hostname string
	// PeerTimeout, when set, overrides the per-peer default of three times the
	// peer's own announce interval.
	PeerTimeout time.Duration
	// MaxPeers caps the peers held at once (default 4096); announcements from
	// further new hosts are dropped and counted.
	MaxPeers int
	// MaxDisksPerPeer caps one peer's disks (default 2048); the rest of an
	// over-long list is dropped and counted.
	MaxDisksPerPeer int
	// MaxDisks caps the disks held for all peers together (default
	// 65536); an announcement that would pass it is refused and counted.
	MaxDisks int
	// MaxTombstones caps how many departed peers' last sequence numbers are
	// remembered to refuse replays (default 4 × MaxPeers).
	MaxTombstones int
	// Now is the clock (default time.Now); tests may set it.
	Now func() time.Time
	// Annotate, when set, may add to the disk of a DiskAppeared event
	// before it is published (diskd's memory marks a disk that is back).
	// It is called with the inventory's lock held and must be quick and
	// must not call the inventory.
	Annotate func(*diskstate.Disk)
}

// Defaults for Options.
const (
	DefaultMaxPeers        = 4096
	DefaultMaxDisksPerPeer = 2048
	DefaultMaxDisks        = 65536
)

// ErrReplay is returned for an announcement whose sequence number does not
// move forward for its host: a replay, a duplicate, or a peer whose clock went
// back across a restart.
var ErrReplay = errors.New("sequence number did not move forward (replay or duplicate)")

// ErrDuplicate is returned for a copy of an announcement already applied
// that arrives on another transport (a peer heard on two sends everything on
// both): harmless, unlike a replay. The transport is recorded all the same.
var ErrDuplicate = errors.New("copy of a message already applied, heard on another transport")

// ErrPeerCap is returned for an announcement from a new host when MaxPeers
// peers are already held.
var ErrPeerCap = errors.New("peer limit reached")

// ErrDiskCap is returned for an announcement that would take the disks
// held for all peers past MaxDisks.
var ErrDiskCap = errors.New("disk limit reached")

// ErrSelf is returned for an announcement that carries our own host id.
var ErrSelf = errors.New("announcement carries this host's own id")

// Stats are the inventory's own counters.
type Stats struct {
	Replays          uint64 // announcements dropped as replays
	Duplicates       uint64 // copies heard on a second transport
	PeerCapHits      uint64 // announcements from new hosts dropped at MaxPeers
	DiskCapHits      uint64 // announcements truncated at MaxDisksPerPeer
	TotalDiskCapHits uint64 // announcements refused at MaxDisks
	EventsDropped    uint64 // events not delivered to a slow subscriber
}

// ScanState is the outcome of the last local scan.
type ScanState struct {
	At  time.Time // zero before the first scan
	Err error     // nil when it succeeded
}

type peerState struct {
	info diskstate.Peer
	// seen is when the disks were last announced, and so the LastSeen of
	// every one of them (each announcement lists them all). The LastSeen
	// stored in disks is not kept up to date: read them with sorted, or
	// set LastSeen to seen.
	seen time.Time
	// disks are the peer's disks sorted by device and uuid (with LastSeen
	// as stored), one per key: kept sorted so that Disks need not sort
	// them again at every call (in a profile of 16,000 disks, sorting was
	// a third of a `list --json`), and found by binary search (the only
	// copy: a map beside it doubled the inventory's memory).
	disks []diskstate.Disk
	// via is the last sequence number applied from each transport, so
	// that a copy heard on a second one is told from a replay.
	via map[string]*viaMark
	// supervised: a transport watches this peer's liveness (and drops it
	// with Drop), so Expire leaves it alone.
	supervised bool
	// sentAt is the send time of the highest accepted message (zero when
	// it carried none), and parts the announcement parts accepted with
	// sequence number info.Seq (bit i: part i): the parts of one
	// announcement share a sequence number, and each is accepted once.
	sentAt time.Time
	parts  partSet
}

// sorted returns the peer's disks sorted, with their LastSeen.
func (ps *peerState) sorted() []diskstate.Disk {
	out := slices.Clone(ps.disks)
	for i := range out {
		out[i].LastSeen = ps.seen
	}
	return out
}

// Inventory holds the network-wide view. Create it with New.
type Inventory struct {
	opts Options

	mu      sync.RWMutex
	local   []diskstate.Disk // this host's disks, sorted by device and uuid (byKey)
	peers   map[string]*peerState
	tombs   *tombstones             // last accepted sequence of departed peers
	pending map[string]*pendingMark // hosts not held yet: parts accepted
	remote  int                     // disks held for peers, for MaxDisks
	scan    ScanState
	stats   Stats
	subs    map[*Subscription]struct{}
}

// New returns an empty inventory for this host.
func New(opts Options) *Inventory {
	opts.MaxPeers = defaults.Positive(opts.MaxPeers, DefaultMaxPeers)
	opts.MaxDisksPerPeer = defaults.Positive(opts.MaxDisksPerPeer, DefaultMaxDisksPerPeer)
	opts.MaxDisks = defaults.Positive(opts.MaxDisks, DefaultMaxDisks)
	opts.MaxTombstones = defaults.Positive(opts.MaxTombstones, 4*opts.MaxPeers)
	opts.Now = defaults.Clock(opts.Now)
	return &Inventory{
		opts:    opts,
		peers:   map[string]*peerState{},
		tombs:   newTombstones(opts.MaxTombstones),
		pending: map[string]*pendingMark{},
		subs:    map[*Subscription]struct{}{},
	}
}

// HostID is this host's stable identity.
func (inv *Inventory) HostID() string { return inv.opts.HostID }

// Hostname is this host's name as shown to people.
func (inv *Inventory) Hostname() string { return inv.opts.Hostname }

// SetLocal records the outcome of a local scan. On success disks replaces the
// local list (only Device, UUID, PartUUID, Label, Type and Mountpoints are
// read) and the differences are published. On failure the previous list is
// kept, since nothing is known about what changed, and only the error is
// recorded. It reports whether the local list changed.
func (inv *Inventory) SetLocal(disks []diskstate.Disk, err error) bool {
	now := inv.opts.Now()
	inv.mu.Lock()
	defer inv.mu.Unlock()
	inv.scan = ScanState{At: now, Err: err}
	inv.signalLocked(scansOf)
	if err != nil {
		return false
	}
	next := make([]diskstate.Disk, 0, len(disks))
	for _, d := range disks {
		d.HostID, d.Hostname, d.Local, d.LastSeen, d.Present = inv.opts.HostID, inv.opts.Hostname, true, now, true
		d.Mountpoints = normalizeMounts(d.Mountpoints)
		if prev := findKey(inv.local, &d); prev != nil {
			d.KeepFill(prev) // small fill-level changes wait until they add up
		}
		next = append(next, d)
	}
	next = byKey(next)
	changed := inv.diffLocked(inv.local, next, diskstate.Peer{HostID: inv.opts.HostID, Hostname: inv.opts.Hostname})
	inv.local = next
	return changed
}

// Scan returns the outcome of the last local scan.
func (inv *Inventory) Scan() ScanState {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	return inv.scan
}

// Announcement is a peer's complete disk list as received.
type Announcement struct {
	HostID        string
	Hostname      string
	BootID        string
	Seq           uint64
	Interval      time.Duration
	Address       string
	Authenticated bool
	// Via is the name of the transport it came on ("multicast", "gossip").
	Via string
	// Supervised says that the transport watches the peer's liveness
	// itself and drops it with Drop when it fails or leaves: the
	// inventory does not time it out while it stays supervised.
	Supervised bool
	Disks      []diskstate.Disk // only Device, UUID, PartUUID, Label, Type and Mountpoints are read
}

// Apply records a peer's announcement, replacing that peer's disk list, and
// publishes what changed. It returns ErrSelf, ErrReplay, ErrPeerCap or
// ErrDiskCap (and changes nothing) when the announcement is refused, or
// ErrDuplicate (and only records a.Via) for a copy heard on another transport. It keeps copies of the
// disks, never a.Disks itself, so the caller may reuse that slice.
func (inv *Inventory) Apply(a Announcement) error {
	now := inv.opts.Now()
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if err := inv.admitLocked(a.HostID, a.Via, a.Seq); err != nil {
		return err
	}
	if err := inv.applyLocked(&a, now); err != nil {
		return err
	}
	ps := inv.peers[a.HostID]
	ps.info.Seq, ps.sentAt, ps.parts = a.Seq, time.Time{}, allParts
	return nil
}

// applyLocked replaces a peer's disk list with a's, once the replay rule
// has admitted it; the caller sets the peer's mark.
func (inv *Inventory) applyLocked(a *Announcement, now time.Time) error {
	ps, known := inv.peers[a.HostID]
	if !known && len(inv.peers) >= inv.opts.MaxPeers {
		inv.stats.PeerCapHits++
		return ErrPeerCap
	}
	disks := a.Disks
	if len(disks) > inv.opts.MaxDisksPerPeer {
		inv.stats.DiskCapHits++
		disks = disks[:inv.opts.MaxDisksPerPeer]
	}
	held := 0
	if known {
		held = len(ps.disks)
	}
	if inv.remote-held+len(disks) > inv.opts.MaxDisks {
		inv.stats.TotalDiskCapHits++
		return ErrDiskCap
	}
	inv.tombs.forget(a.HostID)
	inv.signalLocked(marksOf)
	if !known {
		ps = &peerState{via: map[string]*viaMark{}}
		inv.peers[a.HostID] = ps
	} else if a.Seq < ps.info.Seq {
		a.Seq = ps.info.Seq // the mark does not move back
	}
	if a.Via != "" {
		ps.via[a.Via] = &viaMark{seq: a.Seq, parts: allParts}
	}
	ps.supervised = ps.supervised || a.Supervised
	ps.info = diskstate.Peer{
		HostID: a.HostID, Hostname: a.Hostname, Address: a.Address, BootID: a.BootID,
		Seq: a.Seq, Interval: a.Interval, Timeout: inv.timeoutFor(a.Interval),
		LastHeard: now, Authenticated: a.Authenticated, Via: ps.viaNames(),
	}
	// Nearly every announcement repeats the last one: then there is
	// nothing to diff, sort or publish (in a profile, sorting both
	// lists on every announcement was half of the receive path).
	if known && unchanged(ps.disks, disks, a.Hostname) {
		ps.info.Disks = len(ps.disks)
		ps.seen = now
		return nil
	}
	for i := range ps.disks { // their LastSeen, for DiskDisappeared
		ps.disks[i].LastSeen = ps.seen
	}
	ps.seen = now
	next := make([]diskstate.Disk, 0, len(disks))
	for _, d := range disks {
		d.HostID, d.Hostname, d.Local, d.LastSeen, d.Present = a.HostID, a.Hostname, false, now, true
		d.Mountpoints = normalizeMounts(d.Mountpoints)
		next = append(next, d)
	}
	next = byKey(next)
	ps.info.Disks = len(next)
	if !known {
		inv.publishLocked(&Event{Kind: PeerJoined, Peer: ps.info})
	}
	inv.diffLocked(ps.disks, next, ps.info)
	inv.remote += len(next) - len(ps.disks)
	ps.disks = next
	return nil
}

// unchanged reports whether an announcement repeats the disks held for its
// peer, held being them in their order (by device and uuid): disks are the
// same ones in the same order, as diskd sends them, each with the same
// content under hostname. It compares position by position, without a
// lookup; when it reports false (a change, or another order, or mount
// points that are not sorted yet), the caller diffs the lists in full.
func unchanged(held, disks []diskstate.Disk, hostname string) bool {
	if len(disks) != len(held) {
		return false
	}
	for i := range disks {
		if h := &held[i]; h.Hostname != hostname || !h.SameAnnounced(&disks[i]) {
			return false
		}
	}
	return true
}

// Touch records that a peer was heard (a ping, say) without changing its
// disks; the sequence number must move forward as for Apply. Unknown hosts
// are not added: only an announcement makes a peer.
func (inv *Inventory) Touch(hostID, bootID string, seq uint64) error {
	_, err := inv.Hear(Heard{HostID: hostID, BootID: bootID, Seq: seq, Part: -1})
	return err
}

// Bye removes a peer that said goodbye. The sequence number must move forward
// as for Apply, so a replayed goodbye cannot remove a live peer.
func (inv *Inventory) Bye(hostID, bootID string, seq uint64) error {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if err := inv.admitLocked(hostID, "", seq); err != nil {
		return err
	}
	if _, ok := inv.peers[hostID]; ok {
		inv.peers[hostID].info.Seq = seq
		inv.signalLocked(marksOf)
		inv.removeLocked(hostID, ReasonBye)
	}
	return nil
}

// Expire removes every peer not heard from within its timeout and returns
// the time at which the next one would expire (zero when there are no peers).
func (inv *Inventory) Expire() time.Time {
	now := inv.opts.Now()
	inv.mu.Lock()
	defer inv.mu.Unlock()
	var next time.Time
	for id, ps := range inv.peers {
		if ps.supervised {
			continue
		}
		deadline := ps.info.LastHeard.Add(ps.info.Timeout)
		if !now.Before(deadline) {
			inv.removeLocked(id, ReasonTimeout)
			continue
		}
		if next.IsZero() || deadline.Before(next) {
			next = deadline
		}
	}
	return next
}

// Drop removes a peer at a transport's word (reason ReasonTimeout or
// ReasonBye: a gossip member found dead, or one that left) and reports
// whether it was held. Its last sequence number is remembered as for a
// goodbye, so a late copy of an old announcement cannot bring it back.
func (inv *Inventory) Drop(hostID, reason string) bool {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if _, ok := inv.peers[hostID]; !ok {
		return false
	}
	inv.removeLocked(hostID, reason)
	return true
}

// admitLocked applies the replay rule: per host, the sequence number must
// strictly increase, whatever the daemon instance. Senders start their
// sequence at the wall clock in microseconds, so a restarted peer moves
// forward too. A message of a live peer that its transport via ("" for
// none) has not delivered yet, but another one has, is a cross-transport
// copy: ErrDuplicate, with via recorded.
func (inv *Inventory) admitLocked(hostID, via string, seq uint64) error {
	if hostID == inv.opts.HostID {
		return ErrSelf
	}
	last, ok := uint64(0), false
	ps, live := inv.peers[hostID]
	if live {
		last, ok = ps.info.Seq, true
	} else if m, dead := inv.tombs.get(hostID); dead {
		last, ok = m.Seq, true
	}
	if ok && seq <= last {
		if live && ps.heardVia(via, seq, -1) {
			inv.stats.Duplicates++
			return ErrDuplicate
		}
		inv.stats.Replays++
		return ErrReplay
	}
	return nil
}

// viaNames says which transports the peer was heard on (Peer.Via).
func (ps *peerState) viaNames() string {
	out := make([]string, 0, len(ps.via))
	for name := range ps.via {
		if name != "" {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	if len(out) == 2 {
		return "both"
	}
	return strings.Join(out, "+")
}

func (inv *Inventory) removeLocked(hostID, reason string) {
	ps := inv.peers[hostID]
	delete(inv.peers, hostID)
	inv.tombs.remember(hostID, Mark{BootID: ps.info.BootID, Seq: ps.info.Seq, SentAt: ps.sentAt})
	inv.remote -= len(ps.disks)
	for _, d := range ps.sorted() {
		inv.publishLocked(&Event{Kind: DiskDisappeared, Disk: d, Peer: ps.info, Reason: reason})
	}
	ps.info.Disks = 0
	inv.publishLocked(&Event{Kind: PeerLost, Peer: ps.info, Reason: reason})
}

func (inv *Inventory) timeoutFor(interval time.Duration) time.Duration {
	if inv.opts.PeerTimeout > 0 {
		return inv.opts.PeerTimeout
	}
	return 3 * interval
}

// diffLocked publishes the events that turn old into next (one host's
// disks, each sorted by device and uuid, one per key) and reports whether
// there were any.
func (inv *Inventory) diffLocked(old, next []diskstate.Disk, owner diskstate.Peer) bool {
	changed := false
	for _, d := range old {
		if findKey(next, &d) == nil {
			changed = true
			inv.publishLocked(&Event{Kind: DiskDisappeared, Disk: d, Peer: owner})
		}
	}
	for _, d := range next {
		prev := findKey(old, &d)
		switch {
		case prev == nil:
			changed = true
			if inv.opts.Annotate != nil {
				inv.opts.Annotate(&d)
			}
			inv.publishLocked(&Event{Kind: DiskAppeared, Disk: d, Peer: owner})
		case !prev.SameContent(&d):
			changed = true
			inv.publishLocked(&Event{Kind: DiskChanged, Disk: d, Peer: owner, Changed: diskstate.ChangedFields(prev, &d)})
		}
	}
	return changed
}

// Disks returns every known disk, local and remote, sorted by hostname,
// host id, device and uuid.
func (inv *Inventory) Disks() []diskstate.Disk {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	// Every disk of a host carries the host's name and id, so sorting the
	// hosts and taking each one's disks in their own order sorts them all.
	type host struct {
		name, id string
		disks    []diskstate.Disk
		ps       *peerState // nil for this host
	}
	hosts := make([]host, 0, len(inv.peers)+1)
	n := len(inv.local)
	hosts = append(hosts, host{inv.opts.Hostname, inv.opts.HostID, inv.local, nil})
	for _, ps := range inv.peers {
		hosts = append(hosts, host{ps.info.Hostname, ps.info.HostID, ps.disks, ps})
		n += len(ps.disks)
	}
	slices.SortFunc(hosts, func(a, b host) int {
		return cmp.Or(cmp.Compare(a.name, b.name), cmp.Compare(a.id, b.id))
	})
	out := make([]diskstate.Disk, 0, n)
	for _, h := range hosts {
		i := len(out)
		out = append(out, h.disks...)
		if h.ps != nil {
			for j := i; j < len(out); j++ {
				out[j].LastSeen = h.ps.seen
			}
		}
	}
	return out
}

// EachHost calls fn with each host's disks, host by host in the order of
// Disks (by hostname and host id), each host's sorted by device and uuid
// and with their LastSeen, which is one time for all of a host's disks
// (its last announcement, or this host's last scan); hosts without disks
// are left out. The disks are
// copied, one host at a time, into a buffer that is reused for the next
// host (fn must not keep them), and fn runs without the inventory's lock:
// a walk over every disk costs one host's worth of memory, not a copy of
// them all as Disks makes.
func (inv *Inventory) EachHost(fn func(disks []diskstate.Disk)) {
	type host struct{ name, id string }
	inv.mu.RLock()
	hosts := make([]host, 0, len(inv.peers)+1)
	hosts = append(hosts, host{inv.opts.Hostname, inv.opts.HostID})
	for _, ps := range inv.peers {
		hosts = append(hosts, host{ps.info.Hostname, ps.info.HostID})
	}
	inv.mu.RUnlock()
	slices.SortFunc(hosts, func(a, b host) int {
		return cmp.Or(cmp.Compare(a.name, b.name), cmp.Compare(a.id, b.id))
	})
	var buf []diskstate.Disk
	for _, h := range hosts {
		inv.mu.RLock()
		if h.id == inv.opts.HostID {
			buf = append(buf[:0], inv.local...)
		} else if ps := inv.peers[h.id]; ps != nil {
			buf = append(buf[:0], ps.disks...)
			for i := range buf {
				buf[i].LastSeen = ps.seen
			}
		} else {
			buf = buf[:0] // gone meanwhile
		}
		inv.mu.RUnlock()
		if len(buf) > 0 {
			fn(buf)
		}
	}
}

// Counts returns the number of peers and of disks (local and remote).
func (inv *Inventory) Counts() (peers, disks int) {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	return len(inv.peers), len(inv.local) + inv.remote
}

// LocalDisks returns this host's disks sorted by device.
func (inv *Inventory) LocalDisks() []diskstate.Disk {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	return append([]diskstate.Disk{}, inv.local...)
}

// Peers returns the peers sorted by hostname and host id.
func (inv *Inventory) Peers() []diskstate.Peer {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	out := make([]diskstate.Peer, 0, len(inv.peers))
	for _, ps := range inv.peers {
		out = append(out, ps.info)
	}
	slices.SortFunc(out, func(a, b diskstate.Peer) int {
		return cmp.Or(cmp.Compare(a.Hostname, b.Hostname), cmp.Compare(a.HostID, b.HostID))
	})
	return out
}

// Stats returns the inventory's counters.
func (inv *Inventory) Stats() Stats {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	return inv.stats
}

// Match returns the disks that pattern selects, for `list PATTERN`; see
// MatchDisks.
func (inv *Inventory) Match(pattern string) []diskstate.Disk { return MatchDisks(inv.Disks(), pattern) }

// Find returns the disks that term finds, for `find TERM`; see FindDisks.
func (inv *Inventory) Find(term string) []diskstate.Disk { return FindDisks(inv.Disks(), term) }

// MatchDisks returns the disks that pattern selects. A pattern with glob
// characters (* ? [) is matched as a shell glob against every field that
// diskstate marks for searches (host id, hostname, device, uuid, partuuid,
// label, partlabel, model, serial and wwn: the fields FindDisks searches);
// any other pattern selects disks where one of those contains it, ignoring
// case. An empty pattern selects every disk.
func MatchDisks(disks []diskstate.Disk, pattern string) []diskstate.Disk {
	if pattern == "" {
		return disks
	}
	glob := strings.ContainsAny(pattern, "*?[")
	lower := strings.ToLower(pattern)
	match := func(f string) bool {
		if glob {
			hit, _ := path.Match(pattern, f)
			return hit
		}
		return f != "" && strings.Contains(strings.ToLower(f), lower)
	}
	fields := searched()
	var out []diskstate.Disk
	for i := range disks {
		if anyField(&disks[i], fields, match) {
			out = append(out, disks[i])
		}
	}
	return out
}

// FindDisks returns the disks where a field that diskstate marks for
// searches (the fields MatchDisks matches) equals term, ignoring case; if
// there are none,
// those where one of them starts with term (ignoring case); if still none,
// those where one of them contains it.
func FindDisks(disks []diskstate.Disk, term string) []diskstate.Disk {
	if term == "" {
		return nil
	}
	lower := strings.ToLower(term)
	tiers := []func(f string) bool{
		func(f string) bool { return f != "" && strings.EqualFold(f, term) },
		func(f string) bool { return strings.HasPrefix(strings.ToLower(f), lower) },
		func(f string) bool { return strings.Contains(strings.ToLower(f), lower) },
	}
	fields := searched()
	for _, match := range tiers {
		var out []diskstate.Disk
		for i := range disks {
			if anyField(&disks[i], fields, match) {
				out = append(out, disks[i])
			}
		}
		if len(out) > 0 {
			return out
		}
	}
	return nil
}

// OnHost returns the disks of the host named host: its hostname or its
// host id, ignoring case. An empty host selects every disk (--host unset).
func OnHost(disks []diskstate.Disk, host string) []diskstate.Disk {
	if host == "" {
		return disks
	}
	var out []diskstate.Disk
	for _, d := range disks {
		if strings.EqualFold(d.Hostname, host) || strings.EqualFold(d.HostID, host) {
			out = append(out, d)
		}
	}
	return out
}

// searched returns the string fields that searches match.
func searched() []diskstate.Field {
	var out []diskstate.Field
	for _, f := range diskstate.Fields() {
		if f.Kind == diskstate.String && f.Search {
			out = append(out, f)
		}
	}
	return out
}

// anyField reports whether match accepts one of d's fields.
func anyField(d *diskstate.Disk, fields []diskstate.Field, match func(string) bool) bool {
	for i := range fields {
		if match(*fields[i].Str(d)) {
			return true
		}
	}
	return false
}

func normalizeMounts(m []string) []string {
	if len(m) == 0 {
		return []string{}
	}
	m = slices.Clone(m)
	slices.Sort(m)
	return slices.Compact(m)
}

// compareKeys orders one host's disks: by device, then uuid.
func compareKeys(a, b *diskstate.Disk) int {
	return cmp.Or(cmp.Compare(a.Device, b.Device), cmp.Compare(a.UUID, b.UUID))
}

// byKey sorts one host's disks by device and uuid in place and keeps one
// disk per key, the last one listed (as a map from key to disk would).
func byKey(ds []diskstate.Disk) []diskstate.Disk {
	slices.SortStableFunc(ds, func(a, b diskstate.Disk) int { return compareKeys(&a, &b) })
	out := ds[:0]
	for i := range ds {
		if n := len(out); n > 0 && compareKeys(&out[n-1], &ds[i]) == 0 {
			out[n-1] = ds[i]
			continue
		}
		out = append(out, ds[i])
	}
	clear(ds[len(out):]) // no strings kept alive past the end
	return out
}

// findKey returns the disk of sorted (by byKey's order) with d's device and
// uuid, or nil.
func findKey(sorted []diskstate.Disk, d *diskstate.Disk) *diskstate.Disk {
	i := sort.Search(len(sorted), func(i int) bool { return compareKeys(&sorted[i], d) >= 0 })
	if i < len(sorted) && compareKeys(&sorted[i], d) == 0 {
		return &sorted[i]
	}
	return nil
}

// Status fills in what the inventory knows of the daemon's status: this
// host's identity, the counts of peers and disks, and the last scan.
func (inv *Inventory) Status() diskstate.Status {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	st := diskstate.Status{HostID: inv.opts.HostID, Hostname: inv.opts.Hostname, Peers: len(inv.peers),
		Disks: len(inv.local) + inv.remote, LocalDisks: len(inv.local), LastScan: inv.scan.At}
	if inv.scan.Err != nil {
		st.ScanError = inv.scan.Err.Error()
	}
	return st
}
