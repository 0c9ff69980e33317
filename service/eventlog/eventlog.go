// Package eventlog writes the inventory's change events to the daemon's log
// as sentences: a peer that joined or was lost, a disk of this host that
// appeared, disappeared or changed, and the disks of peers. Every string
// that came from the network or a disk is escaped.
//
// It is not the inventory (which decides what changed) and not the journal
// setup (cmd/diskd chooses the handler and level). It owns only how the
// events read in the log.
package eventlog

import (
	"context"
	"log/slog"

	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/inventory"
	"github.com/diskd/diskd/service/present"
)

// Log writes one event.
func Log(ctx context.Context, log *slog.Logger, e inventory.Event) {
	switch e.Kind {
	case inventory.PeerJoined:
		log.LogAttrs(ctx, slog.LevelInfo, "peer joined", peerAttrs(e.Peer)...)
	case inventory.PeerLost:
		log.LogAttrs(ctx, slog.LevelInfo, "peer lost", append(peerAttrs(e.Peer), slog.String("reason", e.Reason))...)
	case inventory.DiskAppeared, inventory.DiskDisappeared, inventory.DiskChanged:
		log.LogAttrs(ctx, slog.LevelInfo, "disk "+e.Kind.String(), diskAttrs(e)...)
	}
}

func peerAttrs(p diskstate.Peer) []slog.Attr {
	attrs := []slog.Attr{slog.String("hostname", present.Escape(p.Hostname)), slog.String("host_id", p.HostID)}
	if p.Address != "" {
		attrs = append(attrs, slog.String("address", p.Address))
	}
	return attrs
}

func diskAttrs(e inventory.Event) []slog.Attr {
	d := e.Disk
	attrs := []slog.Attr{slog.String("host", present.Escape(d.Host())), slog.String("device", present.Escape(d.Device))}
	if d.Label != "" {
		attrs = append(attrs, slog.String("label", present.Escape(d.Label)))
	}
	if d.UUID != "" {
		attrs = append(attrs, slog.String("uuid", present.Escape(d.UUID)))
	}
	return append(attrs, slog.Bool("local", d.Local))
}
