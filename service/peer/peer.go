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
)

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
		Seq: s.seq.Add(1), Interval: s.opts.Interval,
	}
}

// send sends m on every transport, cut at each one's budget (encoded once
// for transports of the same budget). A transport that fails does not keep
// m from the others; the error names every one that failed.
func (s *Service) send(m wire.Message) error {
	var (
		errs   []error
		grams  [][]byte
		budget int
	)
	for _, t := range s.transports {
		if b := t.Budget(); grams == nil || b != budget {
			g, err := encode(m, b, s.opts.Keyring, s.opts.Log)
			if err != nil {
				return err
			}
			grams, budget = g, b
		}
		for _, g := range grams {
			if _, err := t.Send(g); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", t.Name(), err))
				break // the announcement is incomplete on t without this part
			}
			s.out.Add(1)
		}
	}
	return errors.Join(errs...)
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

// Announce sends this host's full disk list on every transport.
func (s *Service) Announce(context.Context) error {
	m := s.header(wire.KindAnnounce)
	m.Disks = s.inv.LocalDisks() // the encoder writes the announced fields only
	return s.send(m)
}

// Ping asks every peer to re-announce.
func (s *Service) Ping(context.Context) error { return s.send(s.header(wire.KindPing)) }

// Bye tells peers this host is leaving, so they drop its disks at once.
func (s *Service) Bye() error { return s.send(s.header(wire.KindBye)) }

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
