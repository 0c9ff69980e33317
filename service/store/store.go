package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/diskd/diskd/service/defaults"
)

// Store is the contract every implementation keeps; storetest checks it.
//
// Writes (Seen, Gone, HostGone, Heard) never wait for disk I/O: they change
// the in-memory view at once and leave persisting to the implementation.
// Their times are when the caller learned the fact, from one clock; a
// disk's last-seen time never moves backwards. Reads always see every
// write that returned. All methods are safe for concurrent use. Slices
// and structs returned are copies the caller owns.
type Store interface {
	// Seen records that each disk is attached and present at the given
	// time. A disk seen at another place than its last one (another host
	// or device) ends the old sighting as detached and starts a new one.
	// Another disk present at the same host and device is gone
	// (detached): a device holds one filesystem at a time.
	Seen(at time.Time, disks ...DiskInfo) error
	// Gone records that the disks are no longer present, for reason.
	// Only a disk that is present at exactly that host id and device is
	// changed; any other is left alone (it moved, or was never seen).
	Gone(at time.Time, reason GoneReason, disks ...DiskInfo) error
	// HostGone marks every disk present on the host as gone for reason
	// (ReasonBye or ReasonTimeout, typically).
	HostGone(at time.Time, reason GoneReason, hostID string) error
	// Heard records a peer: its hostname, address, when it was heard and
	// its replay mark. The peer's record is replaced as a whole; the
	// caller decides which mark is the highest accepted one.
	Heard(peers ...Peer) error

	// Disk returns the disk with the identity key (see Identity).
	Disk(key string) (Disk, bool)
	// Disks returns every remembered disk, newest last-seen first.
	Disks() []Disk
	// Find returns the disks matching term: those with a field equal to
	// it, else those with a field starting with it, else those with a
	// field containing it (fields: uuid, partuuid, label, device,
	// hostname, host id; case is ignored). Newest last-seen first.
	Find(term string) []Disk
	// History returns every sighting of the disks matching term, newest
	// first. It matches like Find, and also against every past place
	// (host id, hostname, device) of a disk.
	History(term string) []HistoryEntry
	// Peer returns one peer by host id.
	Peer(hostID string) (Peer, bool)
	// Peers returns every remembered peer, ordered by host id.
	Peers() []Peer

	// Flush makes every write that returned before the call durable.
	Flush(ctx context.Context) error
	// Maintain applies retention now (MaxAge, MaxEntries) and, for a
	// file-backed store, rewrites the file when it is much larger than
	// its content. Implementations also do this on their own.
	Maintain(ctx context.Context) error
	// Stats reports counters for status output.
	Stats() Stats

	// Close stops the store's goroutines, flushes and releases the file.
	// Writes after Close fail with ErrClosed; reads keep answering from
	// memory.
	io.Closer
}

// GoneReason says why a disk stopped being present.
type GoneReason string

// The reasons a disk is gone.
const (
	// ReasonDetached: its host reported the disk is no longer attached
	// (or the disk turned up at another place).
	ReasonDetached GoneReason = "detached"
	// ReasonBye: its host said bye (clean daemon stop).
	ReasonBye GoneReason = "bye"
	// ReasonTimeout: its host was not heard from within the peer timeout.
	ReasonTimeout GoneReason = "timeout"
	// ReasonRestart: diskd restarted while the disk was present; the
	// daemon reports again what is really present after the restart.
	ReasonRestart GoneReason = "restart"
)

var reasons = [...]GoneReason{"", ReasonDetached, ReasonBye, ReasonTimeout, ReasonRestart}

func reasonCode(r GoneReason) (uint8, bool) {
	for i, x := range reasons {
		if i > 0 && x == r {
			return uint8(i), true
		}
	}
	return 0, false
}

func reasonOf(c uint8) GoneReason {
	if int(c) < len(reasons) {
		return reasons[c]
	}
	return ""
}

// DiskInfo is a disk as a host reports it: the input to Seen and Gone.
type DiskInfo struct {
	HostID      string
	Hostname    string
	Device      string
	Label       string
	Type        string
	UUID        string
	PartUUID    string
	MountPoints []string
}

// Disk is one remembered disk.
type Disk struct {
	// Key is the disk's identity (see Identity).
	Key string `json:"key"`
	// HostID, Hostname and Device are where it was seen last.
	HostID      string    `json:"host_id"`
	Hostname    string    `json:"hostname"`
	Device      string    `json:"device"`
	Label       string    `json:"label"`
	Type        string    `json:"type"`
	UUID        string    `json:"uuid"`
	PartUUID    string    `json:"partuuid"`
	MountPoints []string  `json:"mountpoints"`
	FirstSeen   time.Time `json:"first_seen"`
	LastSeen    time.Time `json:"last_seen"`
	// Present is true while its host reports it.
	Present bool `json:"present"`
	// GoneAt and GoneReason are set while it is not present.
	GoneAt     time.Time  `json:"gone_at,omitzero"`
	GoneReason GoneReason `json:"gone_reason,omitempty"`
	// Sightings are the places and times it was seen, newest first, at
	// most Options.MaxSightings of them.
	Sightings []Sighting `json:"sightings"`
}

// Sighting is one stretch of time a disk was present at one place (host
// id and device). Its times have a resolution of one second.
type Sighting struct {
	HostID string `json:"host_id"`
	// Hostname is the host's latest known name (hosts are kept by id).
	Hostname string `json:"hostname"`
	Device   string `json:"device"`
	// From is when it was first seen there; Until when it was last seen
	// there (for the current sighting: its last-seen time so far).
	From  time.Time `json:"from"`
	Until time.Time `json:"until"`
	// Reason is why the sighting ended; empty while it lasts.
	Reason GoneReason `json:"reason,omitempty"`
}

// HistoryEntry is one sighting together with the disk it belongs to.
type HistoryEntry struct {
	Key      string `json:"key"`
	UUID     string `json:"uuid"`
	PartUUID string `json:"partuuid"`
	Label    string `json:"label"`
	Type     string `json:"type"`
	Sighting
}

// Peer is one remembered host and its replay mark.
type Peer struct {
	HostID    string    `json:"host_id"`
	Hostname  string    `json:"hostname"`
	Addr      string    `json:"address"`
	LastHeard time.Time `json:"last_heard"`
	Mark      Mark      `json:"mark"`
}

// Mark is the highest accepted message of a peer: a receiver restores it
// after a restart to keep refusing captured datagrams.
type Mark struct {
	BootID string    `json:"boot_id"`
	Seq    uint64    `json:"seq"`
	SentAt time.Time `json:"sent_at"`
}

// Stats are counters for status output.
type Stats struct {
	Disks      int       // remembered disks
	Present    int       // of which present
	Peers      int       // remembered peers
	Pending    int       // records changed in memory, not yet committed
	Commits    uint64    // transactions committed
	LastCommit time.Time // when the last one was committed
	LastError  string    // the last commit or maintenance error, "" after a success
	Evicted    uint64    // records removed by retention
	Compacted  uint64    // file rewrites
	FileSize   int64     // bytes, 0 for the memory store
}

// Options tune a store; the zero value means every default.
type Options struct {
	// MaxAge: disks not seen and peers not heard for longer are removed.
	// Default 365 days.
	MaxAge time.Duration
	// MaxEntries: at most this many disks, and at most this many peers,
	// are kept; the oldest last-seen (last-heard) go first. Default 100,000.
	MaxEntries int
	// MaxSightings per disk; older ones are dropped. Default 32.
	MaxSightings int
	// FlushInterval: pending changes are committed this long after the
	// first of them (a failed commit is retried this long after it).
	// Default 1 s.
	FlushInterval time.Duration
	// BatchSize: a commit starts early when this many records are
	// pending, and no transaction writes more (a larger commit takes
	// several). Default 4096.
	BatchSize int
	// SeenInterval: a change that only moves a present disk's last-seen
	// time is committed at most this often (Flush and Close commit it at
	// once). After a crash such a time may be this much too old.
	// Default 1 minute.
	SeenInterval time.Duration
	// MaintainInterval: how often retention and the compaction check run.
	// Default 10 minutes.
	MaintainInterval time.Duration
	// LockTimeout: how long Open waits for another process's lock on the
	// file. Default 1 s.
	LockTimeout time.Duration
	// Logger receives the few reports a store makes (a file moved aside,
	// commit failures and recoveries, compactions). Default: discard.
	Logger *slog.Logger
	// Now is the clock for retention. Default time.Now.
	Now func() time.Time
}

// Defaults.
const (
	DefaultMaxAge           = 365 * 24 * time.Hour
	DefaultMaxEntries       = 100_000
	DefaultMaxSightings     = 32
	DefaultFlushInterval    = time.Second
	DefaultBatchSize        = 4096
	DefaultSeenInterval     = time.Minute
	DefaultMaintainInterval = 10 * time.Minute
	DefaultLockTimeout      = time.Second
)

func (o Options) withDefaults() Options {
	o.MaxAge = defaults.Positive(o.MaxAge, DefaultMaxAge)
	o.MaxEntries = defaults.Positive(o.MaxEntries, DefaultMaxEntries)
	o.MaxSightings = min(defaults.Positive(o.MaxSightings, DefaultMaxSightings), maxSightingsLimit)
	o.FlushInterval = defaults.Positive(o.FlushInterval, DefaultFlushInterval)
	o.BatchSize = defaults.Positive(o.BatchSize, DefaultBatchSize)
	o.SeenInterval = defaults.Positive(o.SeenInterval, DefaultSeenInterval)
	o.MaintainInterval = defaults.Positive(o.MaintainInterval, DefaultMaintainInterval)
	o.LockTimeout = defaults.Positive(o.LockTimeout, DefaultLockTimeout)
	o.Logger = defaults.Logger(o.Logger)
	o.Now = defaults.Clock(o.Now)
	return o
}

// Limits on what a store accepts. Strings come from the network: a write
// with a longer or invalid one fails as a whole.
const (
	MaxStringLen      = 1024 // bytes, per string field
	MaxMountPoints    = 64   // per disk
	maxSightingsLimit = 1024 // upper bound for Options.MaxSightings
)

// Errors.
var (
	// ErrLocked: another process holds the state file's lock.
	ErrLocked = errors.New("state directory is in use by another diskd")
	// ErrClosed: a write after Close.
	ErrClosed = errors.New("store is closed")
	// ErrInvalid: a write with an invalid value; nothing of it was applied.
	ErrInvalid = errors.New("invalid store input")
)

// Identity is a disk's key in the store: its filesystem UUID, else its
// partition UUID, else its host id and device. It is "uuid:UUID",
// "partuuid:PARTUUID" or "dev:LEN:HOSTID:DEVICE", where LEN is the length
// of HOSTID in bytes (so no host id or device can make two places share a
// key). Case is kept as reported.
func Identity(d DiskInfo) string {
	switch {
	case d.UUID != "":
		return "uuid:" + d.UUID
	case d.PartUUID != "":
		return "partuuid:" + d.PartUUID
	default:
		return "dev:" + strconv.Itoa(len(d.HostID)) + ":" + d.HostID + ":" + d.Device
	}
}

func checkString(what, s string) error {
	if len(s) > MaxStringLen {
		return fmt.Errorf("%w: %s is %d bytes long, at most %d are allowed", ErrInvalid, what, len(s), MaxStringLen)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s %q is not valid UTF-8", ErrInvalid, what, s)
	}
	return nil
}

func checkDisk(d DiskInfo) error {
	if d.HostID == "" {
		return fmt.Errorf("%w: disk %q has no host id", ErrInvalid, d.Device)
	}
	if d.UUID == "" && d.PartUUID == "" && d.Device == "" {
		return fmt.Errorf("%w: disk on host %q has neither uuid, partuuid nor device", ErrInvalid, d.HostID)
	}
	for _, f := range [...]struct{ what, s string }{
		{"host id", d.HostID}, {"hostname", d.Hostname}, {"device", d.Device},
		{"label", d.Label}, {"type", d.Type}, {"uuid", d.UUID}, {"partuuid", d.PartUUID},
	} {
		if err := checkString(f.what, f.s); err != nil {
			return err
		}
	}
	if len(d.MountPoints) > MaxMountPoints {
		return fmt.Errorf("%w: disk %q has %d mount points, at most %d are allowed", ErrInvalid, d.Device, len(d.MountPoints), MaxMountPoints)
	}
	for _, m := range d.MountPoints {
		if err := checkString("mount point", m); err != nil {
			return err
		}
	}
	return nil
}

func checkPeer(p Peer) error {
	if p.HostID == "" {
		return fmt.Errorf("%w: peer without host id", ErrInvalid)
	}
	for _, f := range [...]struct{ what, s string }{
		{"host id", p.HostID}, {"hostname", p.Hostname}, {"address", p.Addr}, {"boot id", p.Mark.BootID},
	} {
		if err := checkString(f.what, f.s); err != nil {
			return err
		}
	}
	return nil
}

func checkReason(r GoneReason) error {
	if _, ok := reasonCode(r); !ok {
		return fmt.Errorf("%w: gone reason %q is not one of detached, bye, timeout, restart", ErrInvalid, r)
	}
	return nil
}
