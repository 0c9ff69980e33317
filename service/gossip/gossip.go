package gossip

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"golang.org/x/time/rate"

	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/inventory"
	"github.com/diskd/diskd/service/wire"
)

// Defaults and fixed values.
const (
	// Name is the transport's name, as the peers table's VIA column shows it.
	Name = "gossip"
	// DefaultPort is the UDP and TCP port of the mesh: next to diskd's
	// multicast port 4277, and not memberlist's 7946, which serf and consul
	// use.
	DefaultPort = 4278
	// Label is put on every packet and stream; memberlist refuses traffic
	// without it or with another label (another kind of cluster).
	Label = "diskd"
	// DefaultMaxMembers caps the members of the mesh (as the inventory caps
	// peers).
	DefaultMaxMembers = inventory.DefaultMaxPeers
	// budget is the largest diskd datagram sent on the mesh: it must fit,
	// with memberlist's headers, label, compression and encryption, in
	// one UDP packet of memberlist's default 1400 bytes.
	budget = 1100
	// recvQueue bounds the datagrams waiting for Recv.
	recvQueue = 4096
	// outboxQueue bounds the direct messages waiting to be sent.
	outboxQueue = 1024
	// byeTimeout bounds the time Close spends telling every member
	// directly that this node leaves; byeSenders is how many it tells at
	// once.
	byeTimeout = 500 * time.Millisecond
	byeSenders = 16
	// byeRecheck is how many probe intervals after a member said it
	// leaves it is asked for a fresh announcement if memberlist still
	// finds it alive. One that did leave is found dead within 3 to 7
	// intervals in a mesh of 15; asking one not found dead yet (a large
	// mesh) costs a failed dial.
	byeRecheck = 10
	// orphanAfter is how many probe intervals a host heard through the
	// mesh may go without being a live member here before it is dropped
	// (see dropOrphans): longer than failure detection takes to find a
	// member dead and than a join takes to reach every member.
	orphanAfter = 20
)

// Messages on the mesh start with one byte saying what they are.
const (
	msgDatagram = 'd' // a diskd datagram, to apply and relay
	msgRefresh  = 'r' // "announce afresh": we had lost you
	msgStateReq = 'q' // "send me your state", carrying the sender's state
	msgState    = 's' // the answer: the sender's state
	msgLeaving  = 'l' // "I am leaving": the sender's name and its last sequence number
)

// Timing tunes memberlist for diskd. The zero value of a field takes the
// value of LANTiming.
type Timing struct {
	ProbeInterval   time.Duration // one member probed this often
	ProbeTimeout    time.Duration // a probe unanswered this long is failed
	SuspicionMult   int           // suspect for Mult × log10(members) × ProbeInterval
	SuspicionMaxMul int           // at most this many times that, without confirmations
	PushPull        time.Duration // state exchanged with one random member this often
	Gossip          time.Duration // broadcasts sent this often
	GossipToDead    time.Duration // the dead are still gossiped to this long
	TCPTimeout      time.Duration // a stream (push/pull, join) gives up after this long
	Reconnect       time.Duration // one lost member retried this often
	JoinRetryMin    time.Duration // first wait before retrying the seeds
	JoinRetryMax    time.Duration // longest wait between two tries
	LeaveTimeout    time.Duration // Close waits this long for the leave to spread
}

// LANTiming is diskd's tuning: memberlist's LAN defaults with a shorter
// suspicion (a killed host is dropped within about 5 s in a mesh of 15), a
// faster push/pull, a longer time gossiping to the dead and a reconnect
// loop, so that a partition of up to a minute heals by itself.
func LANTiming() Timing {
	return Timing{
		ProbeInterval: time.Second, ProbeTimeout: 500 * time.Millisecond,
		SuspicionMult: 3, SuspicionMaxMul: 2,
		PushPull: 15 * time.Second, Gossip: 200 * time.Millisecond, GossipToDead: 60 * time.Second,
		TCPTimeout: 3 * time.Second, Reconnect: 2 * time.Second,
		JoinRetryMin: time.Second, JoinRetryMax: 30 * time.Second, LeaveTimeout: time.Second,
	}
}

func (t *Timing) fill() {
	d := LANTiming()
	for _, f := range []struct{ v, def *time.Duration }{
		{&t.ProbeInterval, &d.ProbeInterval}, {&t.ProbeTimeout, &d.ProbeTimeout},
		{&t.PushPull, &d.PushPull}, {&t.Gossip, &d.Gossip}, {&t.GossipToDead, &d.GossipToDead},
		{&t.TCPTimeout, &d.TCPTimeout}, {&t.Reconnect, &d.Reconnect},
		{&t.JoinRetryMin, &d.JoinRetryMin}, {&t.JoinRetryMax, &d.JoinRetryMax}, {&t.LeaveTimeout, &d.LeaveTimeout},
	} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
	if t.SuspicionMult <= 0 {
		t.SuspicionMult = d.SuspicionMult
	}
	if t.SuspicionMaxMul <= 0 {
		t.SuspicionMaxMul = d.SuspicionMaxMul
	}
}

// Options configure a Transport.
type Options struct {
	// NodeName is this node's name in the mesh: the host id, which must be
	// unique.
	NodeName string
	// Bind is the address and port to listen on (UDP and TCP); an
	// unspecified address listens on all. Port 0 takes DefaultPort.
	Bind netip.AddrPort
	// Advertise, when valid, is the address and port other members reach
	// this node on (behind NAT).
	Advertise netip.AddrPort
	// Seeds are the HOST[:PORT] to join (a name may resolve to several
	// hosts); a seed that cannot be reached is retried with backoff.
	Seeds []string
	// Keys encrypt and authenticate the mesh (32 bytes each, the first
	// seals). Without keys Open fails unless Insecure is set.
	Keys     [][]byte
	Insecure bool
	// Ring opens diskd datagrams (nil: they are not sealed).
	Ring       *wire.Keyring
	Timing     Timing
	MaxMembers int // default DefaultMaxMembers
	Log        *slog.Logger
	// NoJoinSync skips the exchange of state with every member after
	// joining (a load generator's many nodes need not know each other's
	// disks); the node then learns states by broadcast and push/pull only.
	NoJoinSync bool
	// OnLost is called when a member is found dead (reason
	// inventory.ReasonTimeout) or leaves (inventory.ReasonBye).
	OnLost func(name, reason string)
	// OnRefresh is called when a member asks this node to announce afresh
	// (it had lost this node); the announcement that follows is broadcast.
	OnRefresh func()
}

// SeedStatus is where joining one seed stands.
type SeedStatus struct {
	Seed     string
	Joined   bool
	Attempts int
	LastErr  string    // the last failure, if any
	NextTry  time.Time // zero once joined or given up
}

// Status is the mesh as this node sees it.
type Status struct {
	Alive, Suspect, Dead, Left int
	// Health is memberlist's awareness score: 0 is healthy, higher means
	// this node is slow to answer probes.
	Health int
	Seeds  []SeedStatus
	// QueueFull counts datagrams dropped because Recv fell behind.
	QueueFull uint64
}

type packet struct {
	data []byte
	src  netip.Addr
}

// heard is what the transport has passed on of one host: its highest
// sequence number and which parts of that announcement.
type heard struct {
	seq   uint64
	parts [4]uint64 // bit i: part i (MaxParts is 255)
	// dropped: the host was dropped (it left, was found dead, or was an
	// orphan) since its announcement of seq; a newer one clears it.
	dropped bool
}

func (h *heard) has(part int) bool { return h.parts[part/64]&(1<<(part%64)) != 0 }
func (h *heard) set(part int)      { h.parts[part/64] |= 1 << (part % 64) }

type lostMember struct {
	addr string
	at   time.Time
}

// ownAnnouncement collects the parts of this node's announcement in the
// making.
type ownAnnouncement struct {
	seq   uint64
	parts [][]byte
	disks [][]diskstate.Disk
	have  int
}

// Transport is a peer.Transport over a memberlist mesh. Create it with Open.
type Transport struct {
	opts Options
	ml   *memberlist.Memberlist
	mlp  atomic.Pointer[memberlist.Memberlist] // ml, for the delegates (set after Create)
	// selfAddr is this node's advertised host:port (set after Create;
	// NotifyJoin holds memberlist's lock and must not ask it).
	selfAddr string
	queue    *memberlist.TransmitLimitedQueue
	recv     chan packet
	outbox   chan outgoing
	ctx      context.Context
	cancel   context.CancelFunc
	// streams ends memberlist's outgoing streams (dials, direct
	// messages) still open when Close stops waiting for them.
	streams     context.Context
	stopStreams context.CancelFunc
	wg          sync.WaitGroup
	close       sync.Once
	cerr        error

	mu        sync.Mutex
	state     [][]byte // the datagrams of our latest complete announcement
	stateSeq  uint64   // and its sequence number
	pending   ownAnnouncement
	lastDisks []diskstate.Disk
	announced bool
	force     bool
	seen      map[string]*heard
	nodes     map[string]*memberlist.Node // live members but us
	lost      map[string]lostMember       // members found dead, to retry
	bye       map[string]byeMark          // members dropped because they said they leave
	// stale are members dropped from the inventory (found dead) whose
	// fresh state has not come since: the sequence number they had then.
	stale map[string]uint64
	// orphans are hosts heard through the mesh (announcements relayed by
	// others) that are not live members here: since when.
	orphans   map[string]time.Time
	left      int
	seeds     []SeedStatus
	queueFull uint64
	// loseLeave (tests only) skips the leave's gossip and its best-effort
	// packets, as a loaded network may lose them.
	loseLeave bool
}

// byeMark is a member dropped because it said it leaves: the sequence
// number its message carried, and when it came.
type byeMark struct {
	seq uint64
	at  time.Time
}

type outgoing struct {
	to  *memberlist.Node
	msg []byte
}

var nodeNameRe = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)

// Open starts the mesh: it listens at once and joins the seeds in the
// background (a seed that cannot be reached does not keep the node from
// starting; see Status). Close leaves the mesh.
func Open(opts Options) (*Transport, error) {
	if !nodeNameRe.MatchString(opts.NodeName) {
		return nil, fmt.Errorf("gossip: node name %q is not a valid host id", opts.NodeName)
	}
	if len(opts.Keys) == 0 && !opts.Insecure {
		return nil, errors.New("gossip needs --key-file (the mesh is encrypted with its keys), or --gossip-insecure for a trusted network")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.MaxMembers <= 0 {
		opts.MaxMembers = DefaultMaxMembers
	}
	opts.Timing.fill()
	t := &Transport{
		opts:    opts,
		recv:    make(chan packet, recvQueue),
		outbox:  make(chan outgoing, outboxQueue),
		seen:    map[string]*heard{},
		nodes:   map[string]*memberlist.Node{},
		lost:    map[string]lostMember{},
		bye:     map[string]byeMark{},
		stale:   map[string]uint64{},
		orphans: map[string]time.Time{},
	}
	for _, s := range opts.Seeds {
		t.seeds = append(t.seeds, SeedStatus{Seed: s})
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.streams, t.stopStreams = context.WithCancel(context.Background())
	t.queue = &memberlist.TransmitLimitedQueue{RetransmitMult: 4, NumNodes: func() int {
		t.mu.Lock()
		defer t.mu.Unlock()
		return len(t.nodes) + 1
	}}

	c := memberlist.DefaultLANConfig()
	c.Name = opts.NodeName
	bind := opts.Bind
	if !bind.Addr().IsValid() {
		bind = netip.AddrPortFrom(netip.IPv4Unspecified(), bind.Port())
	}
	if bind.Port() == 0 {
		bind = netip.AddrPortFrom(bind.Addr(), DefaultPort)
	}
	c.BindAddr, c.BindPort = bind.Addr().String(), int(bind.Port())
	c.AdvertisePort = c.BindPort
	if opts.Advertise.IsValid() {
		c.AdvertiseAddr = opts.Advertise.Addr().String()
		if opts.Advertise.Port() != 0 {
			c.AdvertisePort = int(opts.Advertise.Port())
		}
	}
	c.Label = Label
	// No compression: what diskd sends on the mesh is sealed (ciphertext
	// does not compress) and memberlist's own messages are small, while
	// compressing allocates a 64 KB LZW table for every packet sent (half
	// of a daemon's allocations in a mesh of 200). Compressed messages from
	// other members are still read.
	c.EnableCompression = false
	if len(opts.Keys) > 0 {
		// memberlist keeps the slices: copies, so the caller may clear its own.
		keys := make([][]byte, len(opts.Keys))
		for i, k := range opts.Keys {
			keys[i] = slices.Clone(k)
		}
		ring, err := memberlist.NewKeyring(keys, keys[0])
		if err != nil {
			return nil, fmt.Errorf("gossip keys: %w", err)
		}
		c.Keyring = ring
		c.GossipVerifyIncoming, c.GossipVerifyOutgoing = true, true
	}
	tm := opts.Timing
	c.ProbeInterval, c.ProbeTimeout = tm.ProbeInterval, tm.ProbeTimeout
	c.SuspicionMult, c.SuspicionMaxTimeoutMult = tm.SuspicionMult, tm.SuspicionMaxMul
	c.PushPullInterval, c.GossipInterval, c.GossipToTheDeadTime = tm.PushPull, tm.Gossip, tm.GossipToDead
	c.TCPTimeout = tm.TCPTimeout
	c.DeadNodeReclaimTime = 10 * time.Second // a host restarted elsewhere takes its name back
	c.Delegate, c.Events, c.Alive = (*delegate)(t), (*events)(t), (*alive)(t)
	c.Logger = log.New(&logWriter{log: opts.Log, limit: rate.NewLimiter(2, 10)}, "", 0)
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{c.BindAddr}, BindPort: c.BindPort, Logger: c.Logger})
	if err != nil {
		t.stopStreams()
		return nil, fmt.Errorf("gossip: listening on %s: %w", bind, err)
	}
	c.Transport = &netTransport{NetTransport: nt, stop: t.streams}
	ml, err := memberlist.Create(c)
	if err != nil {
		t.stopStreams()
		_ = nt.Shutdown()
		return nil, fmt.Errorf("gossip: listening on %s: %w", bind, err)
	}
	t.ml = ml
	t.selfAddr = ml.LocalNode().Address()
	t.mlp.Store(ml)
	t.wg.Go(t.sendOutbox)
	t.wg.Go(t.reconnect)
	if len(t.seeds) > 0 {
		t.wg.Go(t.join)
	}
	return t, nil
}

// Name is "gossip".
func (t *Transport) Name() string { return Name }

// Budget is the largest datagram the mesh carries in one packet.
func (t *Transport) Budget() int { return budget }

// Supervises reports true: memberlist's failure detection drops this
// transport's peers (see Options.OnLost).
func (t *Transport) Supervises() bool { return true }

// LocalAddr is the address and port the mesh advertises for this node.
func (t *Transport) LocalAddr() string { return t.ml.LocalNode().Address() }

// Send takes one of this node's datagrams. The parts of an announcement
// become the node's push/pull state once all have come, and are broadcast
// when the disk list changed (or a refresh was asked for). Pings and
// goodbyes are not sent: memberlist's probes, push/pull and leave do their
// work on this path.
func (t *Transport) Send(b []byte) (int, error) {
	if t.ctx.Err() != nil {
		return 0, fmt.Errorf("gossip: %w", net.ErrClosed)
	}
	m, err := wire.Decode(b, t.opts.Ring)
	if err != nil {
		return 0, fmt.Errorf("gossip: not a datagram this node can open: %w", err)
	}
	if m.Kind != wire.KindAnnounce {
		return 1, nil
	}
	t.mu.Lock()
	p := &t.pending
	if p.seq != m.Seq || len(p.parts) != m.Parts {
		*p = ownAnnouncement{seq: m.Seq, parts: make([][]byte, m.Parts), disks: make([][]diskstate.Disk, m.Parts)}
	}
	if p.parts[m.Part] == nil {
		p.have++
	}
	p.parts[m.Part], p.disks[m.Part] = slices.Clone(b), m.Disks
	if p.have < len(p.parts) {
		t.mu.Unlock()
		return 1, nil
	}
	all := slices.Concat(p.disks...)
	changed := !t.announced || t.force || !sameDisks(t.lastDisks, all)
	t.state, t.stateSeq, t.lastDisks, t.announced, t.force = p.parts, m.Seq, all, true, false
	*p = ownAnnouncement{}
	parts := t.state
	t.mu.Unlock()
	if changed {
		for i, d := range parts {
			t.queue.QueueBroadcast(&broadcast{host: t.opts.NodeName, seq: m.Seq, part: i, msg: frame(msgDatagram, d)})
		}
	}
	return 1, nil
}

func sameDisks(a, b []diskstate.Disk) bool {
	return slices.EqualFunc(a, b, func(x, y diskstate.Disk) bool { return x.SameAnnounced(&y) })
}

func frame(kind byte, b []byte) []byte {
	out := make([]byte, 1+len(b))
	out[0] = kind
	copy(out[1:], b)
	return out
}

// Recv returns the next datagram heard from a member, with the address of
// the member that sent it first.
func (t *Transport) Recv(buf []byte) (int, netip.Addr, error) {
	select {
	case p := <-t.recv:
		return copy(buf, p.data), p.src, nil
	case <-t.ctx.Done():
		return 0, netip.Addr{}, fmt.Errorf("gossip: %w", net.ErrClosed)
	}
}

// Close leaves the mesh and stops it. Members drop this node with reason
// "bye" at once: first every member is told directly, over memberlist's
// streams (TCP, encrypted like the rest), which a loaded network does not
// lose as it may lose the leave's gossip; members that cannot be reached
// within byeTimeout learn it from the gossip, or find this node dead.
func (t *Transport) Close() error {
	t.close.Do(func() {
		t.sayBye()
		if !t.loseLeave {
			if err := t.ml.Leave(t.opts.Timing.LeaveTimeout); err != nil {
				t.opts.Log.Warn("leaving the gossip mesh", "err", err)
			}
		}
		t.cancel()
		// A direct message still dialling a member that does not answer
		// must not hold up the stop.
		t.stopStreams()
		t.wg.Wait()
		t.cerr = t.ml.Shutdown()
	})
	return t.cerr
}

// sayBye tells every live member that this node leaves: a best-effort
// packet first (it usually arrives within a millisecond), then the same
// message over a stream to each, byeSenders at a time, for at most
// byeTimeout. memberlist tells its event delegate of a member that left
// and one found dead alike; this message tells them apart, and spares the
// members the wait for the leave's gossip.
func (t *Transport) sayBye() {
	t.mu.Lock()
	nodes := make([]*memberlist.Node, 0, len(t.nodes))
	for _, n := range t.nodes {
		nodes = append(nodes, n)
	}
	name, seq := t.opts.NodeName, t.stateSeq
	announced := t.announced
	t.mu.Unlock()
	if len(nodes) == 0 || !announced {
		// Without an announcement no member lists this node's disks.
		return
	}
	msg := append([]byte{msgLeaving, byte(len(name))}, name...)
	msg = binary.BigEndian.AppendUint64(msg, seq)
	if !t.loseLeave {
		for _, n := range nodes {
			_ = t.ml.SendBestEffort(n, msg)
		}
	}
	ctx, cancel := context.WithTimeout(t.ctx, byeTimeout)
	defer cancel()
	jobs := make(chan *memberlist.Node)
	var senders sync.WaitGroup
	var failed atomic.Int64
	for range min(byeSenders, len(nodes)) {
		senders.Go(func() {
			for n := range jobs {
				if err := t.ml.SendReliable(n, msg); err != nil {
					failed.Add(1)
					t.opts.Log.Debug("gossip: telling a member this node leaves failed", "to", n.Name, "err", err)
				}
			}
		})
	}
	sent := 0
feed:
	for _, n := range nodes {
		select {
		case jobs <- n:
			sent++
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	done := make(chan struct{})
	go func() { senders.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		t.stopStreams() // ends the dials and streams still open
		<-done
	}
	if n := int64(len(nodes)-sent) + failed.Load(); n > 0 {
		t.opts.Log.Info("gossip: not every member was told directly that this host leaves; the rest learn it from the gossip",
			"members", len(nodes), "not_told", n)
	}
}

// netTransport is memberlist's NetTransport whose outgoing streams end
// when stop is cancelled: a dial to a member that does not answer, or a
// stream it does not read, cannot outlast Close.
type netTransport struct {
	*memberlist.NetTransport
	stop context.Context
}

func (n *netTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return n.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (n *netTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(n.stop, "tcp", a.Addr)
	if err != nil {
		return nil, err
	}
	return &stoppableConn{Conn: conn, release: context.AfterFunc(n.stop, func() { _ = conn.Close() })}, nil
}

// stoppableConn is a stream that netTransport closes when told to stop.
type stoppableConn struct {
	net.Conn
	release func() bool
}

func (c *stoppableConn) Close() error {
	c.release()
	return c.Conn.Close()
}

// Status reports the members by state, the health score and the seeds.
func (t *Transport) Status() Status {
	var st Status
	for _, n := range t.ml.Members() {
		switch n.State {
		case memberlist.StateAlive:
			st.Alive++
		case memberlist.StateSuspect:
			st.Suspect++
		}
	}
	st.Health = t.ml.GetHealthScore()
	t.mu.Lock()
	st.Dead, st.Left, st.QueueFull = len(t.lost), t.left, t.queueFull
	st.Seeds = slices.Clone(t.seeds)
	t.mu.Unlock()
	return st
}

// take passes on a datagram from the mesh that has not been passed on
// before, and reports whether it did so (and so whether to relay it).
func (t *Transport) take(d []byte) bool {
	if len(d) == 0 || len(d) > wire.MaxDatagram {
		return false
	}
	m, err := wire.Decode(d, t.opts.Ring)
	if err != nil {
		// Let the peer protocol count it (with its reason); never relay it.
		t.deliver(d, netip.Addr{})
		return false
	}
	if m.HostID == t.opts.NodeName || m.Kind != wire.KindAnnounce {
		return false
	}
	t.mu.Lock()
	h := t.seen[m.HostID]
	switch {
	case h == nil:
		if len(t.seen) >= 2*t.opts.MaxMembers {
			t.forgetSeenLocked()
		}
		h = &heard{seq: m.Seq}
		t.seen[m.HostID] = h
	case m.Seq > h.seq:
		*h = heard{seq: m.Seq}
	case m.Seq < h.seq || h.has(m.Part):
		t.mu.Unlock()
		return false
	}
	h.set(m.Part)
	if old, ok := t.stale[m.HostID]; ok && m.Seq > old {
		delete(t.stale, m.HostID)
	}
	// A member that said it leaves and announces anew is back (it
	// restarted before memberlist noticed that it had gone).
	back := false
	if b, ok := t.bye[m.HostID]; ok && m.Seq > b.seq {
		delete(t.bye, m.HostID)
		back = true
	}
	var src netip.Addr
	if n := t.nodes[m.HostID]; n != nil {
		src = addrOf(n)
	}
	t.mu.Unlock()
	if back {
		t.opts.Log.Debug("gossip: a member that said it leaves announces again", "member", m.HostID, "seq", m.Seq)
	}
	if !src.IsValid() {
		if n := t.member(m.HostID); n != nil {
			src = addrOf(n)
			if back {
				t.mu.Lock()
				if _, known := t.nodes[m.HostID]; !known {
					t.nodes[m.HostID] = n
				}
				t.mu.Unlock()
			}
		}
	}
	t.deliver(d, src)
	return true
}

// member looks a live member up in memberlist (for a datagram relayed
// before this node heard of its origin's join): a copy, or nil when
// memberlist does not know it either.
func (t *Transport) member(name string) *memberlist.Node {
	ml := t.mlp.Load()
	if ml == nil {
		return nil
	}
	for _, n := range ml.Members() {
		if n.Name == name {
			c := *n
			return &c
		}
	}
	return nil
}

// leaves drops a member that said it leaves, with reason "bye", at once.
// The message is authenticated as all of the mesh's traffic is (with keys,
// only their holders can send it), and it must carry a sequence number no
// older than the member's latest announcement this node has heard, so
// that a message recorded when a host stopped cannot be replayed once it
// runs again. A member memberlist already found dead, or one dropped so
// before, is left alone; memberlist's own leave or failure detection for
// it later is not reported again.
func (t *Transport) leaves(name string, seq uint64) {
	if name == t.opts.NodeName {
		return
	}
	now := time.Now()
	t.mu.Lock()
	h := t.seen[name]
	_, said := t.bye[name]
	_, lost := t.lost[name]
	if h == nil || seq < h.seq || said || lost {
		t.mu.Unlock()
		return
	}
	if len(t.bye) >= t.opts.MaxMembers {
		for n, b := range t.bye {
			if now.Sub(b.at) > time.Minute {
				delete(t.bye, n)
			}
		}
		if len(t.bye) >= t.opts.MaxMembers {
			t.mu.Unlock()
			return
		}
	}
	t.bye[name] = byeMark{seq: seq, at: now}
	h.dropped = true
	delete(t.nodes, name)
	t.left++
	t.mu.Unlock()
	t.lose(name, inventory.ReasonBye, "it said it leaves")
}

// lose reports a member lost for reason (Options.OnLost), and logs why.
// It is called without t.mu: OnLost reaches into the inventory.
func (t *Transport) lose(name, reason, why string) {
	t.opts.Log.Debug("gossip member lost", "member", name, "reason", reason, "why", why)
	if t.opts.OnLost != nil {
		t.opts.OnLost(name, reason)
	}
}

// forgetSeenLocked forgets what was heard of hosts that are no longer
// members, so that the map stays bounded.
func (t *Transport) forgetSeenLocked() {
	for name := range t.seen {
		if _, live := t.nodes[name]; !live {
			delete(t.seen, name)
		}
	}
}

func (t *Transport) deliver(d []byte, src netip.Addr) {
	select {
	case t.recv <- packet{data: slices.Clone(d), src: src}:
	default:
		t.mu.Lock()
		t.queueFull++
		t.mu.Unlock()
	}
}

func addrOf(n *memberlist.Node) netip.Addr {
	a, _ := netip.AddrFromSlice(n.Addr)
	return a.Unmap()
}

// localState frames our state: for each datagram, its length (2 bytes)
// and the datagram.
func (t *Transport) localState() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []byte
	for _, d := range t.state {
		out = binary.BigEndian.AppendUint16(out, uint16(len(d)))
		out = append(out, d...)
	}
	return out
}

// refresh has the next announcement broadcast and asks for it now.
func (t *Transport) refresh() {
	t.mu.Lock()
	t.force = true
	t.mu.Unlock()
	if t.opts.OnRefresh != nil {
		t.opts.OnRefresh()
	}
}

// cutField cuts a field of one length byte and that many bytes off b.
func cutField(b []byte) (string, []byte, bool) {
	if len(b) < 1 || len(b) < 1+int(b[0]) {
		return "", nil, false
	}
	return string(b[1 : 1+int(b[0])]), b[1+int(b[0]):], true
}

// mergeState passes on the datagrams of a member's state (never relayed:
// every member holds its own).
func (t *Transport) mergeState(buf []byte) {
	for n := 0; len(buf) >= 2 && n < wire.MaxParts; n++ {
		l := int(binary.BigEndian.Uint16(buf))
		if l > len(buf)-2 {
			return
		}
		t.take(buf[2 : 2+l])
		buf = buf[2+l:]
	}
}

// send queues a direct message to a member; it is dropped when the outbox
// is full (the next push/pull repairs what it would have done).
func (t *Transport) send(to *memberlist.Node, msg []byte) {
	select {
	case t.outbox <- outgoing{to: to, msg: msg}:
	default:
	}
}

func (t *Transport) sendOutbox() {
	for {
		select {
		case <-t.ctx.Done():
			return
		case o := <-t.outbox:
			if err := t.ml.SendReliable(o.to, o.msg); err != nil {
				t.opts.Log.Debug("gossip: direct message failed", "to", o.to.Name, "err", err)
			}
		}
	}
}

// join joins the seeds, retrying with backoff until one answers; then it
// asks every member for its state, so that this node knows every disk list
// at once (the seed's came with the join).
func (t *Transport) join() {
	wait := t.opts.Timing.JoinRetryMin
	for {
		joinedSeed := ""
		for i := range t.seeds {
			seed := t.seeds[i].Seed
			n, err := t.ml.Join([]string{withPort(seed)})
			if err == nil && t.ml.NumMembers() < 2 {
				// A seed that is this node (a host given its own address
				// among the seeds) joins nothing.
				n, err = 0, errors.New("only this host answered")
			}
			t.mu.Lock()
			s := &t.seeds[i]
			s.Attempts++
			if err == nil && n > 0 {
				s.Joined, s.LastErr, s.NextTry = true, "", time.Time{}
				joinedSeed = seed
			} else {
				s.LastErr = oneLine(err)
				s.NextTry = time.Now().Add(wait)
			}
			t.mu.Unlock()
			if err == nil && n > 0 {
				t.opts.Log.Info("joined the gossip mesh", "seed", seed, "hosts", n)
				break
			}
			t.opts.Log.Warn("gossip seed not reachable; retrying", "seed", seed, "err", oneLine(err), "retry_in", wait)
			if t.ctx.Err() != nil {
				return
			}
		}
		if joinedSeed != "" {
			t.mu.Lock()
			for i := range t.seeds {
				t.seeds[i].NextTry = time.Time{}
			}
			t.mu.Unlock()
			if !t.opts.NoJoinSync {
				t.requestStates()
			}
			return
		}
		select {
		case <-t.ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, t.opts.Timing.JoinRetryMax)
	}
}

// requestStates sends our state to every member and asks for theirs: the
// members of a load generator (NoJoinSync) do not send theirs to a new
// member unasked.
func (t *Transport) requestStates() {
	msg := t.stateRequest()
	t.mu.Lock()
	nodes := make([]*memberlist.Node, 0, len(t.nodes))
	for _, n := range t.nodes {
		nodes = append(nodes, n)
	}
	t.mu.Unlock()
	for _, n := range nodes {
		t.send(n, msg)
	}
}

// stateRequest is a msgStateReq: our name, our address and our state.
func (t *Transport) stateRequest() []byte {
	name, addr := t.opts.NodeName, t.selfAddr // at most 64 bytes each
	msg := append([]byte{msgStateReq, byte(len(name))}, name...)
	return append(append(append(msg, byte(len(addr))), addr...), t.localState()...)
}

// resync asks every member that came back after it was dropped, and whose
// fresh state has not come since, for its state and for a fresh
// announcement (the inventory refuses the sequence number it had), until
// one arrives: a single message may be lost on a loaded network. So too
// every member that said it leaves long ago (byeRecheck probe intervals)
// but that memberlist still finds alive: it restarted before memberlist
// noticed, or the message was forged.
func (t *Transport) resync() {
	t.dropOrphans(time.Now())
	t.mu.Lock()
	var back []*memberlist.Node
	for name := range t.stale {
		if n := t.nodes[name]; n != nil {
			back = append(back, n)
		}
	}
	var doubted []string
	for name, b := range t.bye {
		if time.Since(b.at) > byeRecheck*t.opts.Timing.ProbeInterval {
			doubted = append(doubted, name)
		}
	}
	if !t.opts.NoJoinSync {
		// And every live member whose state has not come at all: a
		// broadcast or a welcome may have been lost.
		for name, n := range t.nodes {
			if _, stale := t.stale[name]; !stale && t.seen[name] == nil {
				back = append(back, n)
			}
		}
	}
	t.mu.Unlock()
	for _, name := range doubted {
		if n := t.member(name); n != nil {
			back = append(back, n)
		}
	}
	if len(back) == 0 {
		return
	}
	req := t.stateRequest()
	for _, n := range back {
		t.send(n, req)
		t.send(n, []byte{msgRefresh})
	}
}

// dropOrphans drops, with reason timeout, every host heard through the
// mesh that has not been a live member here for orphanAfter probe
// intervals. The inventory leaves the liveness of the mesh's hosts to
// this transport, which learns it from memberlist's events; a host whose
// announcements were relayed by others but that memberlist here never
// knew alive (it was found dead before this node joined, or it is no
// member at all) would get no event and stay listed for ever. Its next
// announcement, once it is a member, brings it back.
func (t *Transport) dropOrphans(now time.Time) {
	t.mu.Lock()
	var candidates []string
	for name, h := range t.seen {
		_, live := t.nodes[name]
		if !live && !h.dropped {
			candidates = append(candidates, name)
		}
	}
	t.mu.Unlock()
	members := map[string]bool{}
	if ml := t.mlp.Load(); ml != nil && len(candidates) > 0 {
		for _, n := range ml.Members() { // not under t.mu: memberlist calls us with its lock held
			members[n.Name] = true
		}
	}
	grace := orphanAfter * t.opts.Timing.ProbeInterval
	var dropped []string
	t.mu.Lock()
	orphans := map[string]time.Time{}
	for _, name := range candidates {
		h := t.seen[name]
		_, live := t.nodes[name]
		if live || members[name] || h == nil || h.dropped {
			continue
		}
		since, ok := t.orphans[name]
		if !ok {
			since = now
		}
		if now.Sub(since) < grace {
			orphans[name] = since
			continue
		}
		if len(t.stale) < t.opts.MaxMembers {
			t.stale[name] = h.seq
		}
		h.dropped = true
		dropped = append(dropped, name)
	}
	t.orphans = orphans
	t.mu.Unlock()
	for _, name := range dropped {
		t.lose(name, inventory.ReasonTimeout, "heard through the mesh but no live member here")
	}
}

// reconnect retries one lost member now and then: memberlist stops
// gossiping to the dead after a while, and a partition longer than that
// would not heal by itself.
func (t *Transport) reconnect() {
	tick := time.NewTicker(t.opts.Timing.Reconnect)
	defer tick.Stop()
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-tick.C:
		}
		t.resync()
		t.mu.Lock()
		var addrs []string
		for name, l := range t.lost {
			if time.Since(l.at) > 24*time.Hour {
				delete(t.lost, name)
				continue
			}
			addrs = append(addrs, l.addr)
		}
		t.mu.Unlock()
		if len(addrs) == 0 {
			continue
		}
		addr := addrs[rand.N(len(addrs))]
		if _, err := t.ml.Join([]string{addr}); err == nil {
			t.opts.Log.Debug("gossip: reached a lost member again", "address", addr)
		}
	}
}

// withPort adds DefaultPort to a seed without one.
func withPort(seed string) string {
	if _, _, err := net.SplitHostPort(seed); err == nil {
		return seed
	}
	return net.JoinHostPort(seed, strconv.Itoa(DefaultPort))
}

func oneLine(err error) string {
	if err == nil {
		return "no host answered"
	}
	// memberlist's errors are lists: "1 error occurred:\n\t* ...\n\n".
	s := err.Error()
	if i := strings.Index(s, "occurred:"); i >= 0 && strings.Contains(s[:i], "error") {
		s = s[i+len("occurred:"):]
	}
	s = strings.Join(strings.Fields(strings.ReplaceAll(s, "\t* ", "; ")), " ")
	s = strings.TrimPrefix(s, "; ")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// broadcast is one datagram in the transmit queue; a newer announcement of
// the same host replaces the older one's parts.
type broadcast struct {
	host string
	seq  uint64
	part int
	msg  []byte
}

func (b *broadcast) Invalidates(other memberlist.Broadcast) bool {
	o, ok := other.(*broadcast)
	return ok && o.host == b.host && (o.seq < b.seq || o.seq == b.seq && o.part == b.part)
}
func (b *broadcast) Message() []byte { return b.msg }
func (b *broadcast) Finished()       {}

// delegate is the Transport as memberlist's Delegate.
type delegate Transport

func (d *delegate) NodeMeta(int) []byte { return nil }

func (d *delegate) NotifyMsg(b []byte) {
	t := (*Transport)(d)
	if len(b) == 0 {
		return
	}
	switch b[0] {
	case msgDatagram:
		if t.take(b[1:]) {
			m, err := wire.Decode(b[1:], t.opts.Ring)
			if err == nil {
				t.queue.QueueBroadcast(&broadcast{host: m.HostID, seq: m.Seq, part: m.Part, msg: slices.Clone(b)})
			}
		}
	case msgRefresh:
		t.refresh()
	case msgState:
		t.mergeState(b[1:])
	case msgLeaving:
		// The leaving member's name after a length byte, then the
		// sequence number of its latest announcement (8 bytes).
		name, rest, ok := cutField(b[1:])
		if !ok || len(rest) != 8 || !nodeNameRe.MatchString(name) {
			return
		}
		t.leaves(name, binary.BigEndian.Uint64(rest))
	case msgStateReq:
		// The asking member's name and address (host:port), each after
		// a length byte, then its state. The answer goes to that address:
		// this node may not have heard of the member's join yet.
		name, rest, ok := cutField(b[1:])
		addr, rest, ok2 := cutField(rest)
		if !ok || !ok2 || !nodeNameRe.MatchString(name) {
			return
		}
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			return
		}
		t.mergeState(rest)
		to := &memberlist.Node{Name: name, Addr: ap.Addr().AsSlice(), Port: ap.Port()}
		t.send(to, frame(msgState, t.localState()))
		// The asker may refuse the state's sequence number (it kept the
		// marks of a previous run, or dropped this host): announce afresh
		// too, as for msgRefresh.
		t.refresh()
	}
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.queue.GetBroadcasts(overhead, limit)
}

func (d *delegate) LocalState(bool) []byte { return (*Transport)(d).localState() }

func (d *delegate) MergeRemoteState(buf []byte, _ bool) { (*Transport)(d).mergeState(buf) }

// events is the Transport as memberlist's EventDelegate.
type events Transport

func (e *events) NotifyJoin(n *memberlist.Node) {
	t := (*Transport)(e)
	if n.Name == t.opts.NodeName {
		return
	}
	c := *n
	t.mu.Lock()
	if _, said := t.bye[n.Name]; said {
		// Its join reached this node after its goodbye (it stopped
		// soon after joining). A new life would show itself by a newer
		// announcement (see take).
		t.mu.Unlock()
		return
	}
	t.nodes[n.Name] = &c
	_, wasLost := t.lost[n.Name]
	delete(t.lost, n.Name)
	t.mu.Unlock()
	if !t.opts.NoJoinSync {
		// Every member sends its state to each member it learns of, so
		// two that joined at once through different members still know
		// each other's disks at once.
		t.send(&c, frame(msgState, t.localState()))
	}
	if wasLost {
		// Our inventory dropped it and refuses the sequence number it
		// had: ask for its state (newer if it announced since) and for a
		// fresh announcement; resync repeats this until one comes.
		t.send(&c, t.stateRequest())
		t.send(&c, []byte{msgRefresh})
	}
}

func (e *events) NotifyLeave(n *memberlist.Node) {
	t := (*Transport)(e)
	if n.Name == t.opts.NodeName {
		return
	}
	t.mu.Lock()
	delete(t.nodes, n.Name)
	if _, said := t.bye[n.Name]; said {
		// Dropped when it said it leaves; memberlist now knows too
		// (its leave, or failure detection if that was lost).
		delete(t.bye, n.Name)
		t.mu.Unlock()
		return
	}
	if len(t.lost) >= t.opts.MaxMembers {
		for name := range t.lost { // forget one at random
			delete(t.lost, name)
			break
		}
	}
	t.lost[n.Name] = lostMember{addr: n.Address(), at: time.Now()}
	var seq uint64
	if h := t.seen[n.Name]; h != nil {
		seq, h.dropped = h.seq, true
	}
	if len(t.stale) < t.opts.MaxMembers {
		t.stale[n.Name] = seq
	}
	t.mu.Unlock()
	t.lose(n.Name, inventory.ReasonTimeout, "memberlist found it dead or gone")
}

func (e *events) NotifyUpdate(n *memberlist.Node) {
	t := (*Transport)(e)
	if n.Name == t.opts.NodeName {
		return
	}
	c := *n
	t.mu.Lock()
	if _, said := t.bye[n.Name]; !said {
		t.nodes[n.Name] = &c
	}
	t.mu.Unlock()
}

// alive is the Transport as memberlist's AliveDelegate: it refuses members
// with names that are not host ids, and new members past MaxMembers.
type alive Transport

func (a *alive) NotifyAlive(n *memberlist.Node) error {
	t := (*Transport)(a)
	if !nodeNameRe.MatchString(n.Name) {
		return errors.New("member name is not a host id")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, known := t.nodes[n.Name]; !known && n.Name != t.opts.NodeName && len(t.nodes) >= t.opts.MaxMembers {
		return errors.New("member limit reached")
	}
	return nil
}

// logWriter turns memberlist's log lines into slog records: [ERR] as
// warnings, [WARN] as info, the rest as debug. Warnings and info are
// limited to a few a second: a stranger's packets (a wrong key, another
// cluster) must not flood the journal.
type logWriter struct {
	log   *slog.Logger
	limit *rate.Limiter
}

func (w *logWriter) Write(p []byte) (int, error) {
	s := string(p)
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == ' ') {
		s = s[:len(s)-1]
	}
	level := slog.LevelDebug
	switch {
	case strings.Contains(s, "[ERR]"):
		level = slog.LevelWarn
	case strings.Contains(s, "[WARN]"):
		level = slog.LevelInfo
	}
	if level > slog.LevelDebug && !w.limit.Allow() {
		return len(p), nil
	}
	w.log.Log(context.Background(), level, "memberlist", "line", s)
	return len(p), nil
}
