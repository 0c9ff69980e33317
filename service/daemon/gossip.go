package daemon

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/gossip"
	"github.com/diskd/diskd/service/wire"
)

// gossipWanted reports whether the configuration turns the gossip mesh on.
func gossipWanted(cfg Config) bool { return len(cfg.Join) > 0 || cfg.GossipBind.IsValid() }

// openGossip opens the gossip mesh with the key file's keys. Lost members
// are dropped from the inventory; a member that asks for a fresh
// announcement gets one through d.refresh.
func (d *daemon) openGossip(ring *wire.Keyring) (*gossip.Transport, []slog.Attr, error) {
	var keys [][]byte
	if d.cfg.KeyFile != "" {
		var err error
		if keys, err = wire.ReadKeyFile(d.cfg.KeyFile); err != nil {
			return nil, nil, err
		}
		defer func() {
			for _, k := range keys {
				clear(k)
			}
		}()
	}
	tr, err := gossip.Open(gossip.Options{
		NodeName: d.inv.HostID(), Bind: d.cfg.GossipBind, Advertise: d.cfg.GossipAdvertise,
		Seeds: d.cfg.Join, Keys: keys, Insecure: d.cfg.GossipInsecure, Ring: ring,
		Timing: d.cfg.GossipTiming, Log: d.log.With("transport", gossip.Name),
		OnLost: func(host, reason string) { d.inv.Drop(host, reason) },
		OnRefresh: func() {
			select {
			case d.refresh <- struct{}{}:
			default:
			}
		},
	})
	if err != nil {
		return nil, nil, err
	}
	d.gossip = tr
	return tr, []slog.Attr{slog.String("gossip", tr.LocalAddr()), slog.Any("join", d.cfg.Join),
		slog.Bool("gossip_encrypted", len(keys) > 0)}, nil
}

// refreshDelay gathers the requests for a fresh announcement that come
// together (every member that sees this host come back asks) into one.
const refreshDelay = 100 * time.Millisecond

// gossipStatus adds the mesh to the status: its members by state, the
// health score and each seed.
func (d *daemon) gossipStatus(st *diskstate.Status) {
	if d.gossip == nil {
		return
	}
	g := d.gossip.Status()
	st.Extra = append(st.Extra, diskstate.KV{Key: "Gossip", Value: fmt.Sprintf(
		"%d alive, %d suspect, %d dead, %d left; health %d (0 is best)", g.Alive, g.Suspect, g.Dead, g.Left, g.Health)})
	var seeds []string
	for _, s := range g.Seeds {
		switch {
		case s.Joined:
			seeds = append(seeds, s.Seed+" joined")
		case s.Attempts == 0:
			seeds = append(seeds, s.Seed+" not tried yet")
		case !s.NextTry.IsZero():
			seeds = append(seeds, fmt.Sprintf("%s unreachable after %d tries (%s); next try in %s",
				s.Seed, s.Attempts, s.LastErr, time.Until(s.NextTry).Round(time.Second)))
		default:
			seeds = append(seeds, s.Seed+" not needed (joined through another seed)")
		}
	}
	if len(seeds) > 0 {
		st.Extra = append(st.Extra, diskstate.KV{Key: "Gossip seeds", Value: strings.Join(seeds, "; ")})
	}
}
