package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/diskd/diskd/dbusapi"
	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/inventory"
	"github.com/diskd/diskd/service/present"
)

// arg is the command's arguments as one string, as the control socket takes
// the rest of its line.
func (e *env) arg() string { return strings.TrimSpace(strings.Join(e.args, " ")) }

// write writes b to stdout; a write error (a closed pipe) is a failure.
func (e *env) write(b []byte) int {
	if _, err := e.stdout.Write(b); err != nil {
		fmt.Fprintf(e.stderr, "diskctl: writing the answer: %v\n", err)
		return exitFailed
	}
	return exitOK
}

// writeJSON writes b, an answer's JSON form, unless making it failed
// with err.
func (e *env) writeJSON(b []byte, err error) int {
	if err != nil {
		return e.fail(err)
	}
	return e.write(b)
}

// noMatch ends a command that selected nothing: it says so on stderr
// (with --json the empty array says it) and returns exitNotFound.
func (e *env) noMatch(format, term string) int {
	if !e.json {
		fmt.Fprintf(e.stderr, "diskctl: "+format+"\n", present.Escape(term))
	}
	return exitNotFound
}

func (e *env) disks(disks []diskstate.Disk) int {
	if !e.json {
		return e.write(present.DisksOutput(disks, e.out))
	}
	return e.writeJSON(present.DisksJSON(disks))
}

func runList(ctx context.Context, e *env) int {
	list := e.client.List
	if e.all {
		list = e.client.ListAll
	}
	disks, err := list(ctx)
	if err != nil {
		return e.fail(err)
	}
	disks = inventory.OnHost(inventory.MatchDisks(disks, e.arg()), e.host)
	if e.all && !e.json {
		return e.write(present.DisksTableAll(disks))
	}
	return e.disks(disks)
}

func runHistory(ctx context.Context, e *env) int {
	term := e.arg()
	hs, err := e.client.History(ctx, term)
	if err != nil {
		return e.fail(err)
	}
	var code int
	if e.json {
		code = e.writeJSON(present.HistoryJSON(hs))
	} else {
		code = e.write(present.HistoryTable(hs))
	}
	if code != exitOK {
		return code
	}
	if len(hs) == 0 {
		return e.noMatch("diskd remembers no disk matching %q", term)
	}
	return exitOK
}

// find returns the disks find TERM selects: diskd's Find, or with --host
// the same search over that host's disks alone (as the control socket
// does it).
func (e *env) find(ctx context.Context, term string) ([]diskstate.Disk, error) {
	if e.host == "" {
		return e.client.Find(ctx, term)
	}
	disks, err := e.client.List(ctx)
	if err != nil {
		return nil, err
	}
	return inventory.FindDisks(inventory.OnHost(disks, e.host), term), nil
}

func runFind(ctx context.Context, e *env) int {
	term := e.arg()
	disks, err := e.find(ctx, term)
	if err != nil {
		return e.fail(err)
	}
	// diskd answers from memory, with absent disks only, when no attached
	// disk matches.
	remembered := len(disks) > 0 && !disks[0].Present
	if remembered && !e.json {
		if code := e.write(present.GoneLines(disks, time.Now())); code != exitOK {
			return code
		}
		return exitNotFound
	}
	if code := e.disks(disks); code != exitOK {
		return code
	}
	if remembered {
		return exitNotFound
	}
	if len(disks) == 0 {
		return e.noMatch("no disk matches %q", term)
	}
	return exitOK
}

// runInfo prints every attribute of the disks find TERM selects.
func runInfo(ctx context.Context, e *env) int {
	term := e.arg()
	disks, err := e.find(ctx, term)
	if err != nil {
		return e.fail(err)
	}
	if len(disks) == 0 {
		fmt.Fprintf(e.stderr, "diskctl: no disk matches %q\n", present.Escape(term))
		return exitNotFound
	}
	if e.json {
		return e.writeJSON(present.DisksJSON(disks))
	}
	var b []byte
	for i := range disks {
		b = append(b, present.DiskInfo(&disks[i], e.out.Bytes)...)
	}
	return e.write(b)
}

func runPeers(ctx context.Context, e *env) int {
	peers, err := e.client.Peers(ctx)
	if err != nil {
		return e.fail(err)
	}
	if !e.json {
		return e.write(present.PeersTable(peers, time.Now()))
	}
	return e.writeJSON(present.PeersJSON(peers))
}

func runStatus(ctx context.Context, e *env) int {
	st, err := e.client.Status(ctx)
	if err != nil {
		return e.fail(err)
	}
	if !e.json {
		return e.write(present.Status(st, time.Now(), present.StatusSummary))
	}
	return e.writeJSON(present.StatusJSON(st, present.StatusSummary))
}

// runAction returns the runner of refresh, announce or ping. They print
// nothing on success, with or without --json.
func runAction(a diskstate.Action) func(context.Context, *env) int {
	return func(ctx context.Context, e *env) int {
		if err := e.client.Run(ctx, a); err != nil {
			return e.fail(err)
		}
		return exitOK
	}
}

// eventJSON is one line of monitor --json.
type eventJSON struct {
	Signal   string          `json:"signal"`
	Disk     *diskstate.Disk `json:"disk,omitempty"`
	HostID   string          `json:"host_id,omitempty"`
	Hostname string          `json:"hostname,omitempty"`
	Reason   string          `json:"reason,omitempty"`
	// Changes: for DiskChanged, what changed since the version monitor
	// knew (absent when it knew none).
	Changes []present.Change `json:"changes,omitempty"`
}

// formatEvent renders one monitor line (with its newline). prev is the
// version of the disk monitor knew before a DiskChanged, or nil: the line
// then says what changed ("label: A → B, fs_avail: 40G → 12G").
func formatEvent(ev dbusapi.Event, asJSON bool, now time.Time, prev *diskstate.Disk) ([]byte, error) {
	var changes []present.Change
	if prev != nil && ev.Signal == dbusapi.SignalDiskChanged {
		changes = present.DiskChanges(prev, &ev.Disk)
	}
	if asJSON {
		out := eventJSON{Signal: ev.Signal, Changes: changes}
		switch ev.Signal {
		case dbusapi.SignalPeerJoined, dbusapi.SignalPeerLost:
			out.HostID, out.Hostname, out.Reason = ev.HostID, ev.Hostname, ev.Reason
		default:
			d := ev.Disk
			out.Disk = &d
		}
		return present.JSONLine(out)
	}
	var fields []string
	switch ev.Signal {
	case dbusapi.SignalPeerJoined:
		fields = []string{present.Text(ev.Hostname), "host-id=" + present.Text(ev.HostID)}
	case dbusapi.SignalPeerLost:
		fields = []string{present.Text(ev.Hostname), "host-id=" + present.Text(ev.HostID),
			"reason=" + present.Text(ev.Reason)}
	default:
		fields = present.DiskRow(&ev.Disk)
		if len(changes) > 0 {
			fields = append(fields, "("+present.ChangesText(changes)+")")
		}
		if d := &ev.Disk; ev.Signal == dbusapi.SignalDiskAppeared && d.Returned {
			fields = append(fields, fmt.Sprintf("returned (was last on %s, %s)",
				present.Text(d.PreviousHostname), present.Since(now.Sub(d.PreviousLastSeen))))
		}
	}
	return fmt.Appendf(nil, "%s %-15s  %s\n", now.Format("15:04:05"), ev.Signal, strings.Join(fields, "  ")), nil
}

// diskKey identifies a disk across events: its host, device and uuid (the
// inventory's key within a host); never its serial alone, which repeats
// behind USB bridges and across RAID members.
type diskKey struct{ host, device, uuid string }

func keyOf(d *diskstate.Disk) diskKey { return diskKey{d.HostID, d.Device, d.UUID} }
