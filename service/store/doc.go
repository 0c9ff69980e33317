// Package store is diskd's memory: every disk it ever saw on any host,
// where and when, and each peer's replay mark, kept across absences and
// daemon restarts in an embedded bbolt file (DIR/diskd.db in the state
// directory).
//
// It is not the live inventory (which disks are attached right now is the
// inventory's business; the store only remembers what it was told), it
// does not talk to the network, and it imports no other diskd package
// but defaults, which knows no diskd type: it has its own plain record
// types (DiskInfo in, Disk, Sighting, HistoryEntry and Peer out).
//
// # Using it
//
//	s, err := store.Open(ctx, "/var/lib/diskd", store.Options{Logger: log})
//	if errors.Is(err, store.ErrLocked) { ... } // another diskd: exit 1
//	defer s.Close()                           // commits what is pending
//	s.Seen(now, disks...)                     // from scans and announcements
//	s.Gone(now, store.ReasonDetached, disk)   // a disk disappeared
//	s.HostGone(now, store.ReasonTimeout, hostID)
//	s.Heard(store.Peer{HostID: id, ..., Mark: store.Mark{BootID: b, Seq: n, SentAt: t}})
//	s.Find("BACKUP"); s.History("BACKUP"); s.Disks(); s.Peers()
//
// Store is the interface both implementations keep: Bolt (the file) and
// Memory (no file, for --state-dir none and tests). The package storetest
// checks any implementation against the same behavioural tests.
//
// # What is remembered
//
// A disk's key is Identity: its filesystem UUID, else its partition UUID,
// else host id and device. Per disk: where it was seen last (host id,
// hostname, device), label, type, uuid, partuuid, mount points, first and
// last seen, whether it is present, and, when gone, gone_at and
// gone_reason: detached (its host reported it gone, or it turned up
// elsewhere), bye (its host said bye), timeout (its host timed out) or
// restart (diskd restarted while it was present). Clones that share a
// UUID share one record; it follows the newest report. A device holds one
// filesystem at a time: a disk reported at a host and device where another
// disk is present makes that one gone (detached).
//
// Each disk keeps its newest 32 sightings (Options.MaxSightings): a
// sighting is one stretch of presence at one place (host id and device)
// with from, until (its last-seen time there) and the reason it ended.
// A new sighting starts when a disk appears, comes back, or shows up at
// another place. Hosts are kept once, in a table of their own, and places
// refer to them by a small number, so a full history costs about 13 bytes
// a sighting and 12 a place on file. A sighting shows its host's latest
// hostname. Sighting times have a resolution of one second; every other
// time keeps nanoseconds.
//
// Per peer (host id): last hostname, address, last heard, and its replay
// mark (boot id, sequence number, sender's send time), replaced as a whole
// by Heard. A restarted receiver reads them back with Peers to keep
// refusing captured datagrams.
//
// # Queries
//
// Find matches a term against uuid, partuuid, label, device, hostname and
// host id, ignoring case: the disks where a field
// equals the term; if none, those where a field starts with it; if none,
// those where a field contains it. An empty term matches nothing. Results
// are newest last-seen first. History matches the same way and also
// against every past place of a disk (so "history beta" lists every disk
// that was ever on host beta) and returns the matching disks' sightings,
// newest first. Reads are answered from memory and see every write that
// returned, committed or not.
//
// # Writes and batching
//
// Seen, Gone, HostGone and Heard validate their whole input first (a
// string over MaxStringLen bytes or not UTF-8, more than MaxMountPoints
// mount points, a missing host id, a bad reason or time fails the call
// with ErrInvalid and applies nothing), then change the in-memory view
// and mark the records changed. They never wait for disk I/O; they may
// wait, on the store's lock, while the writer encodes a batch (a few
// microseconds a record).
//
// The Bolt writer goroutine commits the changed records FlushInterval
// (1 s) after the first change not yet committed, or at once when
// BatchSize (4096) records are pending; while nothing is pending it
// sleeps, so an idle daemon's store costs no wakeups. It commits in
// transactions of at most BatchSize records (a larger
// transaction would need new pages for all it rewrites before the old
// ones are free; Flush, Close and Open may commit more than BatchSize).
// Within one commit, new hosts are written first and removed hosts last,
// so the file is consistent after every transaction. Pending changes are kept per
// record, not as a log: a disk seen a thousand times between commits is
// one pending write. So the queue cannot overflow and nothing is dropped
// or blocked; its memory is bounded by the records themselves, which
// retention bounds (MaxEntries disks and MaxEntries peers). A change that
// only moves a present disk's last-seen time is committed at most every
// SeenInterval (1 min) into a small side bucket, so an announcement round
// of 16,000 unchanged disks does not rewrite 16,000 records; after a crash
// such a time can be up to a minute old. Flush and Close commit
// everything. A failed commit keeps its changes pending and retries them
// FlushInterval later, with whatever came meanwhile; the first failure and the recovery are logged, and
// Stats.LastError shows it meanwhile.
//
// # Opening, locking, damage
//
// Open waits at most LockTimeout (1 s) for bbolt's lock on the file; a
// directory in use fails with the one line "state directory DIR is in use
// by another diskd (its lock on DIR/diskd.db is held)", and
// errors.Is(err, ErrLocked) holds, so the daemon can exit with status 1.
// Once it has the lock, Open makes sure the lock is on the file now at
// the path (the other process may have replaced it by compacting).
//
// Open runs bbolt's consistency check over the whole file and decodes and
// checks every record (invariants such as "only the newest sighting may be
// open", "every place refers to a known host" and "a record is stored
// under its own identity") before it serves anything. After that the
// store never reads records from the file again: all reads come from
// memory, so a page that goes bad later cannot make bbolt panic in a
// query, and a bbolt panic while committing or compacting is recovered
// and reported as a failed commit (the changes stay pending; the next
// Open finds the damage). A file that is not a bbolt file, fails the check (bbolt's
// own panics on bad pages are recovered), or holds a record that does not
// decode or breaks an invariant is renamed to diskd.db.corrupt-TIME
// (UTC, e.g. diskd.db.corrupt-20261202T010203Z), reported once as a
// warning through Options.Logger and by Bolt.MovedAside, and replaced by
// an empty store; Open still succeeds. Nothing is salvaged from it: a
// file with one bad record may have more that decode into wrong values.
// A file that cannot be opened for other reasons (permissions, a missing
// directory) is an error and left alone.
//
// At open, every disk still present from the previous run becomes gone
// with reason restart at its last-seen time (the daemon reports again what
// is really present), and retention is applied; both are committed before
// Open returns.
//
// # Schema
//
// The meta bucket holds the schema version (currently 1; the buckets and
// encodings are described at schemaVersion in codec.go). Records are
// msgpack maps with one-letter keys (places and sightings: short
// arrays), so a later version can add fields that this one skips. There
// is no older version yet; a later version migrates older files at open.
// A file with a newer version (a downgraded diskd) is renamed to
// diskd.db.newer-schema-TIME, reported like a corrupt file, and replaced
// by an empty store: the daemon keeps working and the newer file is kept
// intact for the newer diskd.
//
// # Retention and compaction
//
// Disks not seen, and peers not heard, for MaxAge (365 days) are removed,
// and at most MaxEntries (100,000) disks and MaxEntries peers are kept:
// when a new one would exceed that, the oldest last-seen (last-heard) one
// is removed at once, so the bound holds at every moment. The maintainer
// goroutine applies MaxAge every MaintainInterval (10 min), and when the
// file is at least 1 MiB and more than 1.5 times the bytes its pages use,
// rewrites it: bbolt.Compact into DIR/diskd.db.compact, fsync, rename
// over diskd.db, fsync the directory, and switch to the new file, which
// is opened (and locked) before the rename so the lock is never released.
// The copy is written in transactions of 1 MB of records, without a sync
// each (the one fsync before the rename is what makes it the file), and
// mapped at the old file's size from the start: bbolt copies every node
// of a transaction into the heap each time it maps a growing file anew,
// which for 16,000 disks in one transaction cost 84 MB of allocations.
// Writes made meanwhile wait in memory and are committed to the new file.
// The writer wakes the maintainer early (at most once a minute) when the
// file has grown past that ratio. Past 16 MB the file grows in 1 MB steps
// (bbolt's default is 16 MB). A B-tree under random updates keeps its
// pages about half full, so between passes a churning file can reach
// about twice what it needs.
//
// # Costs
//
// Measured with the benchmarks on a shared 2-core development VM (1,000
// hosts × 16 disks, realistic string lengths):
//
//	16,000 disks, 1 sighting each:           5.5 MB after maintenance (11 MB as written)
//	16,000 disks, 32 sightings, same place: 11.8 MB after maintenance (24 MB as written)
//	16,000 disks, 32 sightings, 32 hosts:   21.6 MB after maintenance (35 MB as written)
//	Open of the 32-sighting file (check, decode, index): 0.3 s; the check alone 20 ms
//	a round of 1,000 peers × 16 unchanged disks: 13 ms of the callers' time,
//	  60 ms including its commit; with every disk changed, 200 ms
//	Find over 16,000 disks (substring): 11 ms
//	compaction of 16,000 disks, 1 sighting each: 38 ms, 9 MB allocated
//	memory: 0.3-0.6 KB a disk with one sighting, 1.4 KB with 32
//	  (2.7 KB when every sighting is at another host)
//
// "As written" is after 32 rounds in which every disk went and came back,
// before the maintainer compacted the file.
package store
