// Package diskstate holds the records that every part of diskd shares: a
// disk as one host sees it (Disk), another host heard on the network (Peer),
// what the daemon reports about itself (Status), what it lets its front ends
// do (Actions), and the one ordered table of a disk's fields (Fields).
//
// The field table is the single place that says, for each attribute of a
// disk, its key in JSON and in the D-Bus dictionaries, its key in
// announcements, its table column, whether searches match it, and the one
// size limit that the scanner, the wire validator and the displays all use.
// The JSON writer, the D-Bus conversion (both ways), the tables and the
// matching walk this table, so a new attribute is a struct field and a table
// entry here, plus the code that collects it.
//
// It is a leaf: it imports only the standard library, and it holds data and
// small pure functions on it, no state and no I/O. It is not the inventory
// (service/inventory owns the live view and its events) and not a format
// (service/wire, service/present and dbusapi render it).
package diskstate

import (
	"cmp"
	"context"
	"slices"
	"time"
)

// Disk is one filesystem on one host. The JSON tags are the contract of the
// control socket's --json output and of the D-Bus a{sv} dictionaries; they
// equal the Key of each entry of Fields, in the same order.
type Disk struct {
	HostID      string    `json:"host_id"`
	Hostname    string    `json:"hostname"`
	Device      string    `json:"device"`
	UUID        string    `json:"uuid"`
	PartUUID    string    `json:"partuuid"`
	Label       string    `json:"label"`
	PartLabel   string    `json:"partlabel"`
	Type        string    `json:"type"`
	FSVersion   string    `json:"fs_version"`
	Mountpoints []string  `json:"mountpoints"`
	Size        uint64    `json:"size"`
	ReadOnly    bool      `json:"read_only"`
	Removable   bool      `json:"removable"`
	Rotational  bool      `json:"rotational"`
	Transport   string    `json:"transport"`
	Model       string    `json:"model"`
	Vendor      string    `json:"vendor"`
	Serial      string    `json:"serial"`
	WWN         string    `json:"wwn"`
	FSSize      uint64    `json:"fs_size"`
	FSAvail     uint64    `json:"fs_avail"`
	FSUsed      uint64    `json:"fs_used"`
	Local       bool      `json:"local"`
	LastSeen    time.Time `json:"last_seen"`
	// Present is true for a disk attached now (every disk of the live
	// inventory); false for one answered from memory, which then has
	// GoneAt and GoneReason (detached, bye, timeout or restart).
	Present    bool      `json:"present"`
	GoneAt     time.Time `json:"gone_at,omitzero"`
	GoneReason string    `json:"gone_reason,omitzero"`
	// Returned, on a DiskAppeared event only: the disk was remembered
	// as gone for longer than a minute and is back; Previous* say where
	// and when it was last seen before.
	Returned         bool      `json:"returned,omitzero"`
	PreviousHostname string    `json:"previous_hostname,omitzero"`
	PreviousDevice   string    `json:"previous_device,omitzero"`
	PreviousLastSeen time.Time `json:"previous_last_seen,omitzero"`
}

// Name is what people call the disk: its label, else its uuid, else its
// partuuid, else its device.
func (d *Disk) Name() string {
	for _, s := range [...]string{d.Label, d.UUID, d.PartUUID} {
		if s != "" {
			return s
		}
	}
	return d.Device
}

// Mounted reports whether the disk has at least one mount point.
func (d *Disk) Mounted() bool { return len(d.Mountpoints) > 0 }

// Host is the disk's host as people know it: its hostname, else its host id.
func (d *Disk) Host() string {
	if d.Hostname != "" {
		return d.Hostname
	}
	return d.HostID
}

// SameContent reports whether two versions of one disk differ in nothing
// that a user would call a change: the hostname and every announced field.
// The host id, Local and LastSeen are not compared.
func (d *Disk) SameContent(o *Disk) bool {
	return d.Hostname == o.Hostname && d.SameAnnounced(o)
}

// SameAnnounced reports whether two disks agree in every announced field
// (those of the table with a Wire key). It compares them by hand, not by
// walking the table, because the inventory calls it for every disk of every
// announcement and the table's accessors would move both disks to the heap;
// TestSameAnnouncedCoversTheTable fails when a field is added to the table
// and not here.
//
// The fill level (fs_avail, fs_used) changes without any event, so it is
// compared with a threshold: see [FillChanged].
func (d *Disk) SameAnnounced(o *Disk) bool {
	return d.Device == o.Device && d.UUID == o.UUID && d.PartUUID == o.PartUUID &&
		d.Label == o.Label && d.PartLabel == o.PartLabel && d.Type == o.Type &&
		d.FSVersion == o.FSVersion && slices.Equal(d.Mountpoints, o.Mountpoints) &&
		d.Size == o.Size && d.ReadOnly == o.ReadOnly && d.Removable == o.Removable &&
		d.Rotational == o.Rotational && d.Transport == o.Transport && d.Model == o.Model &&
		d.Vendor == o.Vendor && d.Serial == o.Serial && d.WWN == o.WWN &&
		d.FSSize == o.FSSize && !FillChanged(d, o)
}

// FillStep is the largest fill-level change that is not worth announcing:
// a filesystem's fs_avail or fs_used must move by at least 1 % of its
// fs_size, and never by more than 1 GiB, to count as a change. So a 20 MiB
// stick reports every 200 KiB, a 4 TB disk every GiB, and a periodic scan
// of a busy filesystem does not flood the network with announcements.
const FillStep = 1 << 30

// FillChanged reports whether the fill level of two versions of a disk
// differs meaningfully: fs_avail or fs_used moved by at least
// min(1 % of fs_size, FillStep) bytes (any change at all when fs_size is
// below 100 bytes, or when one side has no fill level).
func FillChanged(a, b *Disk) bool {
	if (a.FSSize == 0) != (b.FSSize == 0) {
		return true
	}
	step := min(max(a.FSSize, b.FSSize)/100, FillStep)
	return absDiff(a.FSAvail, b.FSAvail) >= max(step, 1) || absDiff(a.FSUsed, b.FSUsed) >= max(step, 1)
}

// KeepFill gives d the fill level of prev when the two differ by less than
// FillChanged counts, so that small changes do not add up unseen between
// scans: the level shown moves in the steps that are announced.
func (d *Disk) KeepFill(prev *Disk) {
	if d.FSSize == prev.FSSize && !FillChanged(d, prev) {
		d.FSAvail, d.FSUsed = prev.FSAvail, prev.FSUsed
	}
}

func absDiff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}

// Peer is another host heard on the network.
type Peer struct {
	HostID        string
	Hostname      string
	Address       string // source address of its last datagram
	BootID        string // the peer's daemon instance
	Seq           uint64
	Interval      time.Duration // the peer's own announce interval
	Timeout       time.Duration // lost when not heard from for this long
	LastHeard     time.Time
	Authenticated bool // its datagrams were sealed with a key of our keyring
	Disks         int
	// Via says which transports it was heard on: one name ("multicast",
	// "gossip"), "both" for two, or the names joined with "+" for more.
	Via string
}

// Sighting is one stretch of time a disk was present at one place (a host
// and device), as `history` shows it: the disk's identity, where, from
// when until when, and why it ended (empty while it lasts).
type Sighting struct {
	HostID   string    `json:"host_id"`
	Hostname string    `json:"hostname"`
	Device   string    `json:"device"`
	UUID     string    `json:"uuid"`
	PartUUID string    `json:"partuuid"`
	Label    string    `json:"label"`
	Type     string    `json:"type"`
	From     time.Time `json:"from"`
	Until    time.Time `json:"until"`
	Reason   string    `json:"reason"`
}

// Memory is what diskd remembers of disks beyond the live inventory:
// disks that are gone, and where every disk was seen. Its disks have
// Present false when gone. All methods are safe for concurrent use.
type Memory interface {
	// Find returns the remembered disks matching term (as the store
	// matches: equal, else prefix, else substring of uuid, partuuid,
	// label, device, hostname or host id), newest last-seen first.
	Find(term string) []Disk
	// History returns every sighting of the disks matching term, newest
	// first.
	History(term string) []Sighting
	// Disks returns every remembered disk, newest last-seen first.
	Disks() []Disk
}

// KV is one more line of status output: "Key: Value" for people, and
// "Key": "Value" in the "extra" object of status --json.
type KV struct {
	Key, Value string
}

// Status is what the daemon reports about itself (the status command, the
// D-Bus properties).
type Status struct {
	Version        string
	HostID         string
	Hostname       string
	Started        time.Time
	Peers          int
	Disks          int // local and remote
	LocalDisks     int
	LastScan       time.Time // zero: no scan yet
	ScanError      string    // empty: the last scan succeeded
	PacketsIn      uint64
	PacketsOut     uint64
	PacketsDropped uint64
	Drops          map[string]uint64 // dropped datagrams by reason
	Extra          []KV              // more lines, optional
}

// Actions are what the daemon lets its front ends (the control socket and
// D-Bus) do besides reading the inventory.
type Actions interface {
	// Refresh rescans the local disks now and returns when the scan is done.
	Refresh(ctx context.Context) error
	// Announce sends the local disk list to the peers now.
	Announce(ctx context.Context) error
	// Ping asks every peer to re-announce.
	Ping(ctx context.Context) error
	// Status reports the daemon's state.
	Status() Status
}

// DefaultActionTimeout bounds one Refresh, Announce or Ping asked for by a
// front end.
const DefaultActionTimeout = 2 * time.Minute

// Action names one of the Actions' commands.
type Action string

// The actions a front end may ask for.
const (
	ActionRefresh  Action = "refresh"
	ActionAnnounce Action = "announce"
	ActionPing     Action = "ping"
)

// ActionList returns the actions in the order help shows them.
func ActionList() []Action { return []Action{ActionRefresh, ActionAnnounce, ActionPing} }

// Run runs the named action on a, bounded by timeout (DefaultActionTimeout
// when zero or less). An unknown name is an error.
func (n Action) Run(ctx context.Context, a Actions, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = DefaultActionTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch n {
	case ActionRefresh:
		return a.Refresh(ctx)
	case ActionAnnounce:
		return a.Announce(ctx)
	case ActionPing:
		return a.Ping(ctx)
	}
	return &unknownActionError{n}
}

type unknownActionError struct{ name Action }

func (e *unknownActionError) Error() string { return "unknown action " + string(e.name) }

// SortDisks sorts disks by hostname, host id, device and uuid: the order of
// every disk list diskd shows.
func SortDisks(ds []Disk) { slices.SortFunc(ds, CompareDisks) }

// CompareDisks orders two disks by hostname, host id, device and uuid.
func CompareDisks(a, b Disk) int {
	return cmp.Or(cmp.Compare(a.Hostname, b.Hostname), cmp.Compare(a.HostID, b.HostID),
		cmp.Compare(a.Device, b.Device), cmp.Compare(a.UUID, b.UUID))
}
