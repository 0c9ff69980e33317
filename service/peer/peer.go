package peer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/inventory"
	"github.com/diskd/diskd/service/wire"
)

// Ping answer limits.
const (
	PingReplyDelay   = 100 * time.Millisecond
	PingPerRequester = time.Second
	PingRateLimit    = 5 // answers a second, in all
	maxPingMemory    = 4096
)

// Drop reasons counted besides wire.DropReason values.
const (
	DropSelf    = "self"    // our own host id
	DropReplay  = "replay"  // sequence did not move forward
	DropPeerCap = "peercap" // too many peers
	DropDiskCap = "diskcap" // too many disks held for peers in all
	DropSize    = "size"    // larger than the largest datagram we accept
	DropStale   = "stale"   // sealed, sent at a time outside the clock-skew window
)

// DefaultMaxClockSkew is the default of Options.MaxClockSkew: how far a
// sealed message's send time may be from the receiver's clock. Hosts that
// keep time with NTP agree within milliseconds; 30 seconds leaves room for
// a host whose clock drifted for days, and bounds how long after its
// capture a sealed datagram can be replayed to a receiver without a mark
// for its sender.
const DefaultMaxClockSkew = 30 * time.Second

// freshRounds is how many announcements of a changed disk list are sent
// twice: a new generation has no parts at its receivers yet, so on a lossy
// link it is the redundancy that lets it arrive within a few intervals.
const freshRounds = 4

// Identity says who this host is on the wire.
type Identity struct {
	HostID   string
	Hostname string
	BootID   string
}

// Options configure a Service.
type Options struct {
	Identity
	Interval time.Duration // our announce interval, told to peers
	Keyring  *wire.Keyring // nil: unsealed
	Log      *slog.Logger
	// OnPing is called when a peer's ping is to be answered, with the delay
	// after which to announce. The daemon triggers its announce job with it,
	// so that several pings are answered by one announcement.
	OnPing func(delay time.Duration)
	// AssemblerPending bounds the partly received multi-part announcements
	// of each transport (default 256).
	AssemblerPending int
	// MaxClockSkew is how far the send time of a sealed message may be
	// from this host's clock, either way (0: DefaultMaxClockSkew; negative:
	// no check). A sealed message outside it is dropped as "stale".
	// Unsealed messages are not checked: anyone can forge them anyway.
	MaxClockSkew time.Duration
	// Now is the clock (default time.Now); tests may set it.
	Now func() time.Time
}

// Stats count datagrams, over every transport.
type Stats struct {
	In, Out, Dropped uint64
	Drops            map[string]uint64
}

// Service speaks the peer protocol over a fixed set of transports.
type Service struct {
	inv        *inventory.Inventory
	opts       Options
	transports []Transport
	seq        atomic.Uint64

	in, out atomic.Uint64

	mu         sync.Mutex
	drops      map[string]uint64
	lastLogged map[string]time.Time
	pingSeen   map[string]time.Time
	pingLimit  *rate.Limiter

	// The content generation of the announced list: it changes only when
	// the list does (announced is the list it was given for), and fresh
	// counts the announcements of it still to be sent twice.
	sendMu sync.Mutex // held while a message is numbered and sent

	genMu     sync.Mutex
	gen       uint64
	announced []diskstate.Disk
	fresh     int
}

// New returns a service that sends on and hears every one of transports;
// call Receive to start hearing peers. The Service does not open the
// transports; Receive closes them when its context ends.
func New(inv *inventory.Inventory, opts Options, transports ...Transport) *Service {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.AssemblerPending <= 0 {
		opts.AssemblerPending = 256
	}
	if opts.MaxClockSkew == 0 {
		opts.MaxClockSkew = DefaultMaxClockSkew
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Service{
		inv: inv, opts: opts, transports: slices.Clone(transports),
		drops:      map[string]uint64{},
		lastLogged: map[string]time.Time{},
		pingSeen:   map[string]time.Time{},
		pingLimit:  rate.NewLimiter(PingRateLimit, PingRateLimit),
	}
	s.seq.Store(uint64(time.Now().UnixMicro()))
	return s
}

func (s *Service) header(kind wire.Kind) wire.Message {
	return wire.Message{
		Kind: kind, HostID: s.opts.HostID, Hostname: s.opts.Hostname, BootID: s.opts.BootID,
		Seq: s.seq.Add(1), Interval: s.opts.Interval, SentAt: s.opts.Now(),
	}
}

// send sends m on every transport, cut at each one's budget (encoded once
// for transports of the same budget). A transport that fails does not keep
// m from the others; the error names every one that failed.
// It returns the most datagrams m took on one transport.
func (s *Service) send(m wire.Message) (int, error) {
	var (
		errs   []error
		grams  [][]byte
		budget int
		most   int
	)
	for _, t := range s.transports {
		if b := t.Budget(); grams == nil || b != budget {
			g, err := encode(m, b, s.opts.Keyring, s.opts.Log)
			if err != nil {
				return most, err
			}
			grams, budget = g, b
		}
		most = max(most, len(grams))
		// A part that cannot be sent does not keep the others from going:
		// receivers combine the parts of one generation across rounds, so
		// the next announcement makes up for it. (Local loss, such as a
		// firewall dropping some datagrams on output, fails single sends.)
		var failed []error
		for _, g := range grams {
			if _, err := t.Send(g); err != nil {
				failed = append(failed, err)
				continue
			}
			s.out.Add(1)
		}
		switch {
		case len(failed) == len(grams):
			errs = append(errs, fmt.Errorf("%s: %w", t.Name(), failed[0]))
		case len(failed) > 0: // partial loss: logged at most once a minute
			s.warnOnce("partial-send", "some datagrams of a message were not sent (logged once a minute)",
				"transport", t.Name(), "failed", len(failed), "of", len(grams), "err", failed[0])
		}
	}
	return most, errors.Join(errs...)
}

// encode encodes m into datagrams. A disk the format cannot carry (a mount
// point list too long for one datagram, say) is left out and logged, rather
// than silencing the whole host.
func encode(m wire.Message, budget int, ring *wire.Keyring, log *slog.Logger) ([][]byte, error) {
	grams, err := wire.Encode(m, budget, ring)
	for de, ok := errors.AsType[*wire.DiskError](err); ok; de, ok = errors.AsType[*wire.DiskError](err) {
		log.Warn("disk left out of the announcement", "device", de.Device, "err", de.Err)
		m.Disks = slices.Delete(slices.Clone(m.Disks), de.Index, de.Index+1)
		grams, err = wire.Encode(m, budget, ring)
	}
	if err != nil {
		return nil, fmt.Errorf("encoding %v: %w", m.Kind, err)
	}
	return grams, nil
}

// warnOnce logs msg at most once a minute per key.
func (s *Service) warnOnce(key, msg string, args ...any) {
	now := time.Now()
	s.mu.Lock()
	logIt := now.Sub(s.lastLogged[key]) >= time.Minute
	if logIt {
		s.lastLogged[key] = now
	}
	s.mu.Unlock()
	if logIt {
		s.opts.Log.Warn(msg, args...)
	}
}

// Announce sends this host's full disk list on every transport, with its
// content generation. The first announcements of a changed list go out
// twice (each copy with its own sequence number) when it takes more than
// one datagram: a receiver needs every part, and on a lossy link the more
// parts, the likelier one is missing; a list of one datagram arrives as
// often as any single datagram does, and is not repeated.
func (s *Service) Announce(context.Context) error {
	disks := s.inv.LocalDisks() // the encoder writes the announced fields only
	s.genMu.Lock()
	if s.gen == 0 || !sameList(s.announced, disks) {
		s.gen++
		s.announced, s.fresh = disks, freshRounds
	}
	gen, fresh := s.gen, s.fresh > 0
	if fresh {
		s.fresh--
	}
	s.genMu.Unlock()
	fill := func(m *wire.Message) { m.Disks, m.Gen = disks, gen }
	parts, err := s.sendNew(wire.KindAnnounce, fill)
	if fresh && parts > 1 {
		_, again := s.sendNew(wire.KindAnnounce, fill)
		err = errors.Join(err, again)
	}
	return err
}

// sameList reports whether two disk lists announce the same, in order.
func sameList(a, b []diskstate.Disk) bool {
	return slices.EqualFunc(a, b, func(x, y diskstate.Disk) bool { return x.SameAnnounced(&y) })
}

// Ping asks every peer to re-announce.
func (s *Service) Ping(context.Context) error {
	_, err := s.sendNew(wire.KindPing, nil)
	return err
}

// Bye tells peers this host is leaving, so they drop its disks at once.
func (s *Service) Bye() error {
	_, err := s.sendNew(wire.KindBye, nil)
	return err
}

// sendNew numbers a new message of kind, lets fill complete it, and sends
// it, one message at a time: messages leave in the order of their
// sequence numbers, which receivers require (a ping numbered before an
// announcement but sent after it would be refused as a replay).
func (s *Service) sendNew(kind wire.Kind, fill func(*wire.Message)) (int, error) {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	m := s.header(kind)
	if fill != nil {
		fill(&m)
	}
	return s.send(m)
}

// Stats returns the datagram counters.
func (s *Service) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{In: s.in.Load(), Out: s.out.Load(), Drops: make(map[string]uint64, len(s.drops))}
	for r, n := range s.drops {
		st.Drops[r] = n
		st.Dropped += n
	}
	return st
}
