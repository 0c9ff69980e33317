// Package daemon is diskd's composition root: from a Config it builds the
// inventory, the scanner's jobs, the peer protocol over its transports, the
// control socket, the D-Bus export and the scheduler, connects them
// (scan → inventory ← peers; inventory → control, D-Bus, announcer) and
// runs them until its context ends.
//
// It decides nothing that one of those parts owns. What it does own is the
// order of start and stop:
//   - everything that can fail on a bad configuration (the host identity,
//     the key file, the interfaces and groups) is checked before the control
//     socket is created, so a bad flag leaves nothing behind;
//   - the control socket listens from the start but is answered only once
//     the first scan is done (or after firstScanGrace without it), so early
//     clients, socket-activated ones above all, are not answered from an
//     empty inventory; READY=1 is sent once the first scan is done, and a
//     ping then asks the peers to announce at once;
//   - the store (service/memory over service/store) opens before the
//     control socket too, so a second diskd on one state directory stops
//     there; it closes last, after the parts that write into it;
//   - on stop a goodbye goes out on every transport before they close, so
//     peers drop this host's disks at once.
package daemon

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/diskd/diskd/dbusapi"
	"github.com/diskd/diskd/service/control"
	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/eventlog"
	"github.com/diskd/diskd/service/gossip"
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
	MaxClockSkew  time.Duration // sealed messages sent further from our clock are dropped; zero: peer.DefaultMaxClockSkew

	// Join turns the gossip mesh on: the seeds (HOST[:PORT]) to join.
	Join []string
	// GossipBind, when valid, turns the mesh on too (a seed that joins no
	// one); zero: all addresses, gossip.DefaultPort.
	GossipBind      netip.AddrPort
	GossipAdvertise netip.AddrPort // for NAT; zero: the bound address
	GossipInsecure  bool           // allow the mesh without a key file
	GossipTiming    gossip.Timing  // zero: gossip.LANTiming
	NoMulticast     bool           // no multicast socket (clouds)

	// Transports, when not nil, are the transports the peer protocol runs
	// over instead of the multicast socket that Groups, Interfaces and TTL
	// describe (tests give in-memory ones). Run closes them.
	Transports []peer.Transport
}

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
	// milliseconds coalesce a burst. Measured: at 50 ms, this wait was
	// most of the time from attach to a peer's view (p50 60 ms).
	debounce = 5 * time.Millisecond
	// firstScanGrace bounds how long the control socket and org.diskd wait
	// for the first scan before they answer anyway (a hung blkid must not
	// keep them silent until the probe times out).
	firstScanGrace = 2 * time.Second
	// expireEvery is the longest time between two runs of the expiry job.
	expireEvery = 5 * time.Second
)

// Defaults of the store's retention and of "returned".
const (
	DefaultHistoryMax    = store.DefaultMaxEntries
	DefaultHistoryMaxAge = store.DefaultMaxAge
	DefaultReturnAfter   = memory.DefaultReturnAfter
)

// MachineIDPath is where the host id comes from by default.
const MachineIDPath = peer.MachineIDPath

// daemon is one running diskd: its parts and the jobs that drive them.
type daemon struct {
	cfg     Config
	log     *slog.Logger
	inv     *inventory.Inventory
	mem     *memory.Recorder
	peers   *peer.Service
	sched   *schedule.Scheduler
	scanJob schedule.Handle
	annJob  schedule.Handle
	expJob  schedule.Handle
	started time.Time
	gossip  *gossip.Transport // nil without the mesh
	refresh chan struct{}     // the mesh asks for a fresh announcement
}

// Run runs the daemon until ctx ends. It returns an error, before it has
// created anything, when the configuration cannot work (no host id, a bad
// key file, no interface for the groups), and an error when the control
// socket cannot be created or a part fails for good.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	id, err := peer.NewIdentity(cfg.HostID, cfg.Hostname)
	if err != nil {
		return err
	}
	var ring *wire.Keyring
	if cfg.KeyFile != "" {
		if ring, err = wire.LoadKeyring(cfg.KeyFile); err != nil {
			return err
		}
	}
	transports, describe, err := openTransports(cfg, log)
	defer func() {
		for _, t := range transports {
			t.Close()
		}
	}()
	if err != nil {
		return err
	}
	// The store too: a state directory held by another diskd ends this
	// one before its control socket exists.
	st, err := memory.OpenStore(ctx, cfg.StateDir, store.Options{
		MaxEntries: cfg.HistoryMax, MaxAge: cfg.HistoryMaxAge, Logger: log})
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Warn("closing the store failed", "err", err)
		}
	}()
	d := &daemon{cfg: cfg, log: log, started: time.Now(), refresh: make(chan struct{}, 1)}
	d.mem = memory.New(st, memory.Options{HostID: id.HostID, ReturnAfter: cfg.ReturnAfter, Log: log})
	d.inv = inventory.New(inventory.Options{HostID: id.HostID, Hostname: id.Hostname, PeerTimeout: cfg.PeerTimeout,
		Annotate: d.mem.Annotate})
	d.inv.RestoreMarks(d.mem.Marks())
	// The gossip mesh drops lost members from the inventory: it opens
	// once the inventory exists, still before the control socket.
	if gossipWanted(cfg) && cfg.Transports == nil {
		tr, attrs, err := d.openGossip(ring)
		if err != nil {
			return err
		}
		transports, describe = append(transports, tr), append(describe, attrs...)
	}
	ln, activated, err := control.Listen(cfg.Socket, log)
	if err != nil {
		return err
	}
	defer ln.Close()

	log.LogAttrs(ctx, slog.LevelInfo, "diskd starting", append([]slog.Attr{
		slog.String("version", cfg.Version), slog.String("host_id", id.HostID), slog.String("hostname", id.Hostname),
		slog.String("socket", ln.Addr().String()), slog.Bool("socket_activated", activated),
		slog.Bool("sealed", ring != nil)}, describe...)...)
	return d.run(ctx, id, ring, transports, ln)
}

// openTransports opens the multicast socket, or takes cfg.Transports, and
// returns them with log attributes that describe them.
func openTransports(cfg Config, log *slog.Logger) ([]peer.Transport, []slog.Attr, error) {
	if cfg.Transports != nil {
		names := make([]string, len(cfg.Transports))
		for i, t := range cfg.Transports {
			names[i] = t.Name()
		}
		return cfg.Transports, []slog.Attr{slog.String("transports", strings.Join(names, ","))}, nil
	}
	if cfg.NoMulticast {
		return nil, []slog.Attr{slog.Bool("multicast", false)}, nil
	}
	groups := cfg.Groups
	if len(groups) == 0 {
		groups = []netip.AddrPort{DefaultGroup}
	}
	conn, err := multicast.Open(multicast.ConnOptions{Groups: groups, Interfaces: cfg.Interfaces, TTL: cfg.TTL, Log: log})
	if err != nil {
		return nil, nil, err
	}
	var ifaces []string
	for _, i := range conn.Interfaces() {
		ifaces = append(ifaces, i.Name)
	}
	return []peer.Transport{conn}, []slog.Attr{slog.Any("groups", conn.Groups()),
		slog.String("interfaces", strings.Join(ifaces, ",")), slog.Int("payload_budget", conn.Budget())}, nil
}

// run builds the parts on the open transports and socket, and runs them
// until ctx ends or one fails.
func (d *daemon) run(ctx context.Context, id peer.Identity, ring *wire.Keyring, transports []peer.Transport, ln net.Listener) error {
	// The parts run on runCtx, which ends only after the goodbye has been
	// sent on the still-open transports (or when a part fails).
	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		wg      sync.WaitGroup
		runErr  error
		errOnce sync.Once
	)
	fail := func(err error) {
		if err != nil {
			errOnce.Do(func() { runErr = err })
			cancel()
		}
	}

	d.sched = schedule.New(schedule.Options{
		Log:    d.log,
		Health: func() { d.inv.Counts() },
		Status: func() string { return present.StatusLine(d.inv.Status()) },
	})
	d.peers = peer.New(d.inv, peer.Options{
		Identity: id, Interval: d.cfg.AnnounceInterval, Keyring: ring, Log: d.log, MaxClockSkew: d.cfg.MaxClockSkew,
		OnPing: func(delay time.Duration) { d.annJob.Trigger(runCtx, delay) },
	}, transports...)
	firstScan := d.addJobs()

	// Subscribed before the first scan can run, so that its "appeared"
	// events trigger the first announcement.
	sub := d.inv.Subscribe(0)
	memSub := d.inv.Subscribe(0)
	wg.Go(func() { fail(d.mem.Run(runCtx, d.inv, memSub)) })
	wg.Go(func() { fail(d.sched.Run(runCtx)) })
	<-d.sched.Started()
	wg.Go(func() { d.follow(runCtx, sub) })
	wg.Go(func() {
		for {
			select {
			case <-runCtx.Done():
				return
			case <-d.refresh:
				d.annJob.Trigger(runCtx, refreshDelay)
			}
		}
	})
	wg.Go(func() { fail(d.peers.Receive(runCtx)) })
	answer := make(chan struct{})
	wg.Go(func() { d.awaitFirstScan(runCtx, firstScan, answer) })
	whenAnswering := func(serve func() error) func() {
		return func() {
			<-answer
			if runCtx.Err() == nil {
				fail(serve())
			}
		}
	}
	srv := &control.Server{Inv: d.inv, Actions: d, Memory: d.mem, Log: d.log}
	wg.Go(whenAnswering(func() error { return srv.Serve(runCtx, ln) })) // Serve closes ln
	wg.Go(whenAnswering(func() error {
		return dbusapi.Serve(runCtx, dbusapi.Options{Bus: d.cfg.Bus, Inv: d.inv, Actions: d, Memory: d.mem, Version: d.cfg.Version, Log: d.log})
	}))
	if !d.cfg.NoUevents {
		wg.Go(func() {
			scan.WatchChanges(runCtx, d.cfg.Devices, func() { d.scanJob.Trigger(runCtx, debounce) },
				func(what string, err error) {
					d.log.Warn(what+" cannot be watched; changes are seen at the periodic rescan",
						"err", err, "scan_interval", d.cfg.ScanInterval)
				})
		})
	}

	select {
	case <-firstScan:
		d.sched.Notify("READY=1")
		d.log.Info("ready", "disks", d.inv.Status().LocalDisks)
		// Learn the network at once instead of waiting for peers' next
		// periodic announcements.
		if err := d.peers.Ping(runCtx); err != nil {
			d.log.Warn("ping after start failed", "err", err)
		}
	case <-ctx.Done():
	case <-runCtx.Done():
	}
	select {
	case <-ctx.Done():
	case <-runCtx.Done():
	}
	if err := d.peers.Bye(); err != nil {
		d.log.Warn("sending goodbye failed", "err", err)
	}
	cancel()
	wg.Wait()
	d.log.Info("diskd stopped")
	return runErr
}

// addJobs adds the scan, announce and expire jobs to the scheduler and
// returns a channel closed when the first scan has ended.
func (d *daemon) addJobs() <-chan struct{} {
	prober := &scan.Prober{Path: d.cfg.Blkid, Timeout: d.cfg.BlkidTimeout, Globs: d.cfg.Devices}
	firstScan := make(chan struct{})
	var firstOnce sync.Once
	d.scanJob = d.sched.Add(schedule.Job{
		Name: "scan", Every: d.cfg.ScanInterval, Immediate: true,
		// The prober kills blkid at BlkidTimeout; the job's own deadline is a
		// backstop for the mount table read after it.
		Timeout: d.cfg.BlkidTimeout + 5*time.Second,
		Run: func(ctx context.Context) error {
			defer firstOnce.Do(func() { close(firstScan) })
			disks, err := prober.Probe(ctx)
			d.inv.SetLocal(disks, err)
			return err
		},
	})
	d.annJob = d.sched.Add(schedule.Job{
		Name: "announce", Every: d.cfg.AnnounceInterval, Jitter: 0.1, Timeout: 5 * time.Second,
		Run: d.peers.Announce,
	})
	// Peers are expired at their deadlines: each run schedules the next at
	// the earliest one (at most expireEvery away, which bounds how late a
	// peer whose timeout shrank is dropped), and a new peer's deadline is
	// scheduled when it joins (follow). Measured: polling every 250 ms was
	// most of an idle daemon's CPU (its wake-ups).
	d.expJob = d.sched.Add(schedule.Job{
		Name: "expire", Every: expireEvery,
		Run: func(ctx context.Context) error {
			if next := d.inv.Expire(); !next.IsZero() {
				d.expJob.Trigger(ctx, min(time.Until(next), expireEvery))
			}
			return nil
		},
	})
	return firstScan
}

// awaitFirstScan closes answer once the first scan is done, or after
// firstScanGrace, or when ctx ends: a client that connected before the
// daemon ran must not be told that this host has no disks, and a hung blkid
// delays it by at most firstScanGrace.
func (d *daemon) awaitFirstScan(ctx context.Context, firstScan <-chan struct{}, answer chan<- struct{}) {
	defer close(answer)
	grace := time.NewTimer(firstScanGrace)
	defer grace.Stop()
	select {
	case <-firstScan:
	case <-grace.C:
		d.log.Warn("the first scan is still running; answering without it", "waited", firstScanGrace)
	case <-ctx.Done():
	}
}

// follow hands each inventory event to the parts that act on it: the log,
// the announcer (a change of the local disks is announced at once) and the
// expiry job (a new peer's deadline).
func (d *daemon) follow(ctx context.Context, sub *inventory.Subscription) {
	defer sub.Close()
	events := eventlog.NewWriter(d.log, nil)
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-sub.C():
			events.Add(ctx, *e)
			if len(sub.C()) == 0 { // the end of a burst: one line per peer
				events.Flush(ctx)
			}
			if peer.AnnouncesOn(*e) {
				d.annJob.Trigger(ctx, 0)
			}
			if e.Kind == inventory.PeerJoined {
				d.expJob.Trigger(ctx, e.Peer.Timeout) // its deadline, if earlier than the next run
			}
		}
	}
}

// Refresh rescans at once (control and D-Bus `refresh`).
func (d *daemon) Refresh(ctx context.Context) error { return d.scanJob.RunNow(ctx) }

// Announce sends the local list at once.
func (d *daemon) Announce(ctx context.Context) error { return d.annJob.RunNow(ctx) }

// Ping asks every peer to re-announce.
func (d *daemon) Ping(ctx context.Context) error { return d.peers.Ping(ctx) }

// Status gathers the numbers of `status` from the parts that own them.
func (d *daemon) Status() diskstate.Status {
	st := d.inv.Status()
	st.Version, st.Started = d.cfg.Version, d.started
	d.peers.Stats().AddTo(&st)
	d.gossipStatus(&st)
	return st
}
