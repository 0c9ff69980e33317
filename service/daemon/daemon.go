// Package daemon assembles diskd's parts into the running service: it builds
// the inventory, the scanner, the multicast service, the control socket and
// the scheduler from a Config, connects them (scan → inventory ← multicast;
// inventory → control, announcer) and runs them until its context ends.
//
// It holds no logic of its own beyond the wiring and the start-up and
// shut-down order: the control socket listens from the start but answers
// only once the first scan is done (or after 2s without it), so that early
// clients, socket-activated ones above all, are not answered from an
// inventory that has not been filled yet; READY=1 is sent once the first
// scan is done; on stop a goodbye is multicast so that peers drop this
// host's disks at once.
package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/diskd/diskd/dbusapi"
	"github.com/diskd/diskd/service/control"
	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/inventory"
	"github.com/diskd/diskd/service/memory"
	"github.com/diskd/diskd/service/multicast"
	"github.com/diskd/diskd/service/peer"
	"github.com/diskd/diskd/service/present"
	"github.com/diskd/diskd/service/scan"
	"github.com/diskd/diskd/service/schedule"
	"github.com/diskd/diskd/service/store"
	"github.com/diskd/diskd/service/wire"
)

// Config is everything the daemon is told on its command line.
type Config struct {
	Version          string
	Socket           string
	Groups           []netip.AddrPort // at most one per address family
	Interfaces       []string
	TTL              int
	AnnounceInterval time.Duration
	ScanInterval     time.Duration
	PeerTimeout      time.Duration // zero: 3 × each peer's own interval
	Blkid            string
	BlkidTimeout     time.Duration
	Devices          []string
	HostID           string // empty: /etc/machine-id
	Hostname         string // empty: os.Hostname()
	Bus              string
	KeyFile          string
	NoUevents        bool
	// StateDir holds the store (DIR/diskd.db); empty: remember in memory
	// only, for this run.
	StateDir      string
	HistoryMax    int           // zero: DefaultHistoryMax
	HistoryMaxAge time.Duration // zero: DefaultHistoryMaxAge
	ReturnAfter   time.Duration // zero: DefaultReturnAfter
}

// Defaults of the store's retention and of "returned".
const (
	DefaultHistoryMax    = store.DefaultMaxEntries
	DefaultHistoryMaxAge = store.DefaultMaxAge
	DefaultReturnAfter   = memory.DefaultReturnAfter
)

// Default groups: DefaultGroup is used when no group is given;
// DefaultGroup6 is the IPv6 group to give for IPv6 (see README: TTL and
// IPv6).
var (
	DefaultGroup  = netip.MustParseAddrPort("239.255.77.77:4277")
	DefaultGroup6 = netip.MustParseAddrPort("[ff15::d15c]:4277")
)

// Default intervals and timeouts.
const (
	DefaultAnnounceInterval = 10 * time.Second
	DefaultScanInterval     = 60 * time.Second
	DefaultBlkidTimeout     = 10 * time.Second
	// uevents and mount changes come in bursts; one probe answers a burst.
	// The kernel sends a burst within a millisecond (losetup: add and
	// change 0.3 ms apart; detach: two changes at once), and a request
	// made while a scan runs gives one more scan after it, so a few
	// milliseconds coalesce a burst. Issue 7's benchmark: at 50 ms, this
	// wait was most of the time from attach to a peer's view (p50 60 ms).
	debounce = 5 * time.Millisecond
	// firstScanGrace bounds how long the control socket and org.diskd wait
	// for the first scan before they answer anyway (a hung blkid must not
	// keep them silent until the probe times out).
	firstScanGrace = 2 * time.Second
	// expireEvery is the longest time between two runs of the expiry job.
	expireEvery = 5 * time.Second
)

// MachineIDPath is where the host id comes from by default.
const MachineIDPath = "/etc/machine-id"

type daemon struct {
	cfg     Config
	log     *slog.Logger
	inv     *inventory.Inventory
	mem     *memory.Recorder
	mc      *peer.Service
	sched   *schedule.Scheduler
	scanJob schedule.Handle
	annJob  schedule.Handle
	expJob  schedule.Handle
	started time.Time
}

// Run runs the daemon until ctx ends. It returns an error when the daemon
// cannot start (a bad key file, a socket it cannot create, no interface).
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	id, err := identity(cfg)
	if err != nil {
		return err
	}
	var ring *wire.Keyring
	if cfg.KeyFile != "" {
		if ring, err = wire.LoadKeyring(cfg.KeyFile); err != nil {
			return err
		}
	}
	d := &daemon{cfg: cfg, log: log, started: time.Now()}
	// The store opens before anything listens: a state directory in use
	// by another diskd ends this one before its control socket exists.
	st, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Warn("closing the store failed", "err", err)
		}
	}()
	d.mem = memory.New(st, memory.Options{HostID: id.HostID, ReturnAfter: cfg.ReturnAfter, Log: log})
	d.inv = inventory.New(inventory.Options{
		HostID: id.HostID, Hostname: id.Hostname, PeerTimeout: cfg.PeerTimeout, Annotate: d.mem.Annotate,
	})
	d.inv.RestoreMarks(d.mem.Marks()...)

	ln, activated, err := control.Listen(cfg.Socket, log)
	if err != nil {
		return err
	}
	defer ln.Close()

	groups := cfg.Groups
	if len(groups) == 0 {
		groups = []netip.AddrPort{DefaultGroup}
	}
	conn, err := multicast.Open(multicast.ConnOptions{Groups: groups, Interfaces: cfg.Interfaces, TTL: cfg.TTL, Log: log})
	if err != nil {
		return err
	}
	defer conn.Close()

	// The parts run on runCtx, which ends only after the goodbye has been
	// sent on the still-open socket (or when a part fails).
	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d.sched = schedule.New(schedule.Options{
		Log:    log,
		Health: func() { d.inv.Counts() },
		Status: d.statusLine,
	})
	d.mc = peer.New(d.inv, peer.Options{
		Identity: id, Interval: cfg.AnnounceInterval, Keyring: ring, Log: log,
		OnPing: func(delay time.Duration) { d.annJob.Trigger(runCtx, delay) },
	}, conn)
	prober := &scan.Prober{Path: cfg.Blkid, Timeout: cfg.BlkidTimeout, Globs: cfg.Devices}
	firstScan := make(chan struct{})
	var firstOnce sync.Once
	d.scanJob = d.sched.Add(schedule.Job{
		Name: "scan", Every: cfg.ScanInterval, Immediate: true,
		// The prober kills blkid at BlkidTimeout; the job's own deadline is a
		// backstop for the mount table read after it.
		Timeout: cfg.BlkidTimeout + 5*time.Second,
		Run: func(ctx context.Context) error {
			defer firstOnce.Do(func() { close(firstScan) })
			return d.scan(ctx, prober)
		},
	})
	d.annJob = d.sched.Add(schedule.Job{
		Name: "announce", Every: cfg.AnnounceInterval, Jitter: 0.1, Timeout: 5 * time.Second,
		Run: d.mc.Announce,
	})
	// Peers are expired at their deadlines: each run schedules the next at
	// the earliest one (at most expireEvery away, which bounds how late a
	// peer whose timeout shrank is dropped), and a new peer's deadline is
	// scheduled when it joins (follow). Issue 7's benchmark: polling every
	// 250 ms was most of an idle daemon's CPU (its wake-ups).
	d.expJob = d.sched.Add(schedule.Job{
		Name: "expire", Every: expireEvery,
		Run: func(ctx context.Context) error {
			if next := d.inv.Expire(); !next.IsZero() {
				d.expJob.Trigger(ctx, min(time.Until(next), expireEvery))
			}
			return nil
		},
	})

	log.Info("diskd starting", "version", cfg.Version, "host_id", id.HostID, "hostname", id.Hostname,
		"socket", ln.Addr().String(), "socket_activated", activated, "groups", conn.Groups(),
		"interfaces", ifaceNames(conn), "payload_budget", conn.Budget(), "sealed", ring != nil)

	var wg sync.WaitGroup
	var runErr error
	var errOnce sync.Once
	fail := func(err error) {
		if err != nil {
			errOnce.Do(func() { runErr = err })
			cancel()
		}
	}
	// Subscribed before the first scan can run, so that its "appeared"
	// events trigger the first announcement.
	sub := d.inv.Subscribe(0)
	memSub := d.inv.Subscribe(0)
	wg.Go(func() { fail(d.mem.Run(runCtx, d.inv, memSub)) })
	wg.Go(func() { fail(d.sched.Run(runCtx)) })
	<-d.sched.Started()
	wg.Go(func() { fail(d.follow(runCtx, sub)) })
	wg.Go(func() { fail(d.mc.Receive(runCtx)) })
	// The control socket and org.diskd answer once the local disks are
	// known: a client that connected before the daemon ran (the one whose
	// connection or call activated it, or one that waited in the backlog
	// during a restart) must not be told that this host has no disks. The
	// socket listens meanwhile. A hung blkid delays them by at most
	// firstScanGrace.
	answer := make(chan struct{})
	wg.Go(func() {
		defer close(answer)
		grace := time.NewTimer(firstScanGrace)
		defer grace.Stop()
		select {
		case <-firstScan:
		case <-grace.C:
			log.Warn("first scan still running; answering without it", "waited", firstScanGrace)
		case <-runCtx.Done():
		}
	})
	whenAnswering := func(serve func() error) func() {
		return func() {
			<-answer
			if runCtx.Err() == nil {
				fail(serve())
			}
		}
	}
	srv := &control.Server{Inv: d.inv, Actions: d, Memory: d.mem, Log: log}
	wg.Go(whenAnswering(func() error { return srv.Serve(runCtx, ln) })) // Run closes ln if it never runs
	wg.Go(whenAnswering(func() error {
		return dbusapi.Serve(runCtx, dbusapi.Options{Bus: cfg.Bus, Inv: d.inv, Actions: d, Memory: d.mem, Version: cfg.Version, Log: log})
	}))
	if !cfg.NoUevents {
		d.watchKernel(runCtx, &wg)
	}

	select {
	case <-firstScan:
		d.sched.Notify("READY=1")
		log.Info("ready", "disks", len(d.inv.LocalDisks()))
		// Learn the network at once instead of waiting for peers' next
		// periodic announcements.
		if err := d.mc.Ping(runCtx); err != nil {
			log.Warn("ping after start failed", "err", err)
		}
	case <-ctx.Done():
	case <-runCtx.Done():
	}
	select {
	case <-ctx.Done():
	case <-runCtx.Done():
	}
	if err := d.mc.Bye(); err != nil {
		log.Warn("sending goodbye failed", "err", err)
	}
	cancel()
	wg.Wait()
	log.Info("diskd stopped")
	return runErr
}

// openStore opens the store in cfg.StateDir (made 0700 when missing), or
// one in memory when there is none. A directory held by another diskd is
// an error that wraps store.ErrLocked; a damaged file is moved aside and
// logged by the store, and the daemon starts with an empty one.
func openStore(ctx context.Context, cfg Config, log *slog.Logger) (store.Store, error) {
	opts := store.Options{MaxEntries: cfg.HistoryMax, MaxAge: cfg.HistoryMaxAge, Logger: log}
	if cfg.StateDir == "" {
		return store.NewMemory(opts), nil
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w (set another with --state-dir, or --state-dir none)", err)
	}
	// The store's goroutines stop at Close, after the last events of the
	// shutdown were written, not when ctx ends.
	b, err := store.Open(context.WithoutCancel(ctx), cfg.StateDir, opts)
	if errors.Is(err, store.ErrLocked) {
		return nil, err // its one line says it all
	} else if err != nil {
		return nil, fmt.Errorf("opening the store: %w", err)
	}
	return b, nil
}

// scan probes the local disks and hands the result to the inventory.
func (d *daemon) scan(ctx context.Context, p *scan.Prober) error {
	disks, err := p.Probe(ctx)
	if err != nil {
		d.inv.SetLocal(nil, err)
		return err
	}
	d.inv.SetLocal(disks, nil)
	return nil
}

// follow logs the inventory's events and announces at once when the local
// disks change.
func (d *daemon) follow(ctx context.Context, sub *inventory.Subscription) error {
	defer sub.Close()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-sub.C():
			switch e.Kind {
			case inventory.PeerJoined, inventory.PeerLost:
				d.log.Info("peer "+e.Kind.String(), "host_id", e.Peer.HostID,
					"hostname", present.Escape(e.Peer.Hostname), "address", e.Peer.Address, "reason", e.Reason)
				if e.Kind == inventory.PeerJoined {
					d.expJob.Trigger(ctx, e.Peer.Timeout) // its deadline, if earlier than the next run
				}
			default:
				d.log.Info("disk "+e.Kind.String(), "host", present.Escape(e.Disk.Hostname),
					"device", present.Escape(e.Disk.Device), "label", present.Escape(e.Disk.Label),
					"uuid", present.Escape(e.Disk.UUID), "local", e.Disk.Local)
				if e.Disk.Local {
					d.annJob.Trigger(ctx, 0)
				}
			}
		}
	}
}

// watchKernel starts the uevent and mount-table watchers; each change
// triggers a debounced rescan. Where a watcher cannot start, it is logged
// once and the periodic rescan is all there is.
func (d *daemon) watchKernel(ctx context.Context, wg *sync.WaitGroup) {
	wg.Go(func() {
		err := scan.WatchUevents(ctx, func(ev scan.Uevent) {
			if ev.Action != "overflow" && !scan.Matches(d.cfg.Devices, ev.DevName) {
				return
			}
			d.scanJob.Trigger(ctx, debounce)
		})
		if err != nil && ctx.Err() == nil {
			d.log.Warn("kernel uevents unavailable; falling back to periodic rescans", "err", err,
				"scan_interval", d.cfg.ScanInterval)
		}
	})
	wg.Go(func() {
		// Only a change to the mounts of block devices can change a disk's
		// mount points: the rest (network namespaces, tmpfs, containers'
		// overlays) need no rescan.
		last, _ := scan.BlockMounts()
		err := scan.WatchMounts(ctx, func() {
			if now, err := scan.BlockMounts(); err == nil && now == last {
				return
			} else if err == nil {
				last = now
			}
			d.scanJob.Trigger(ctx, debounce)
		})
		if err != nil && ctx.Err() == nil {
			d.log.Warn("mount table watch unavailable; mount changes are seen at the next rescan", "err", err)
		}
	})
}

// Refresh rescans at once (control and D-Bus `refresh`).
func (d *daemon) Refresh(ctx context.Context) error { return d.scanJob.RunNow(ctx) }

// Announce multicasts the local list at once.
func (d *daemon) Announce(ctx context.Context) error { return d.annJob.RunNow(ctx) }

// Ping asks every peer to re-announce.
func (d *daemon) Ping(ctx context.Context) error { return d.mc.Ping(ctx) }

// Status gathers the numbers of `status`.
func (d *daemon) Status() diskstate.Status {
	peers, disks := d.inv.Counts()
	sc := d.inv.Scan()
	ms := d.mc.Stats()
	st := diskstate.Status{
		Version: d.cfg.Version, HostID: d.inv.HostID(), Hostname: d.inv.Hostname(), Started: d.started,
		Peers: peers, Disks: disks, LastScan: sc.At,
		PacketsIn: ms.In, PacketsOut: ms.Out, PacketsDropped: ms.Dropped, Drops: ms.Drops,
	}
	if sc.Err != nil {
		st.ScanError = sc.Err.Error()
	}
	return st
}

// statusLine is the one-line summary systemd shows (STATUS=).
func (d *daemon) statusLine() string {
	peers, disks := d.inv.Counts()
	local := len(d.inv.LocalDisks())
	s := fmt.Sprintf("%d local disks, %d disks on %d peers", local, disks-local, peers)
	if err := d.inv.Scan().Err; err != nil {
		s += "; scan failing: " + err.Error()
	}
	return s
}

func ifaceNames(c *multicast.Conn) string {
	var names []string
	for _, i := range c.Interfaces() {
		names = append(names, i.Name)
	}
	return strings.Join(names, ",")
}

// identity settles who this host is: the host id from the flag or
// /etc/machine-id, the hostname from the flag or the kernel, and a fresh
// random id for this daemon instance.
func identity(cfg Config) (peer.Identity, error) {
	id := peer.Identity{HostID: cfg.HostID, Hostname: cfg.Hostname}
	if id.HostID == "" {
		b, err := os.ReadFile(MachineIDPath)
		if err != nil {
			return id, fmt.Errorf("reading the host id: %w (set one with --host-id)", err)
		}
		id.HostID = strings.TrimSpace(string(b))
		if id.HostID == "" {
			return id, fmt.Errorf("%s is empty (set a host id with --host-id)", MachineIDPath)
		}
	}
	if id.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return id, fmt.Errorf("reading the hostname: %w (set one with --hostname)", err)
		}
		id.Hostname = h
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return id, errors.New("no randomness for the instance id")
	}
	id.BootID = hex.EncodeToString(b[:])
	return id, nil
}
