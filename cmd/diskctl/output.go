package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/diskd/diskd/dbusapi"
	"github.com/diskd/diskd/service/control"
	"github.com/diskd/diskd/service/inventory"
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

// jsonLine encodes v as one line, as the control socket does (no HTML
// escaping; control characters are escaped by encoding/json).
func jsonLine(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encode JSON: %w", err)
	}
	return b.Bytes(), nil
}

func (e *env) disks(disks []inventory.Disk) int {
	if !e.json {
		return e.write(control.DisksTable(disks))
	}
	b, err := control.DisksJSON(disks)
	if err != nil {
		return e.fail(err)
	}
	return e.write(b)
}

func runList(ctx context.Context, e *env) int {
	disks, err := e.client.List(ctx)
	if err != nil {
		return e.fail(err)
	}
	return e.disks(inventory.MatchDisks(disks, e.arg()))
}

func runFind(ctx context.Context, e *env) int {
	term := e.arg()
	disks, err := e.client.Find(ctx, term)
	if err != nil {
		return e.fail(err)
	}
	if code := e.disks(disks); code != exitOK {
		return code
	}
	if len(disks) == 0 {
		if !e.json {
			fmt.Fprintf(e.stderr, "diskctl: no disk matches %q\n", control.Escape(term))
		}
		return exitNotFound
	}
	return exitOK
}

func runPeers(ctx context.Context, e *env) int {
	peers, err := e.client.Peers(ctx)
	if err != nil {
		return e.fail(err)
	}
	if !e.json {
		return e.write(control.PeersTable(peers, time.Now()))
	}
	b, err := control.PeersJSON(peers)
	if err != nil {
		return e.fail(err)
	}
	return e.write(b)
}

// statusJSON is status --json: the keys of the control socket's status
// --json that D-Bus carries. last_scan has whole seconds (the LastScan
// property) and is null before the first scan.
type statusJSON struct {
	Version   string     `json:"version"`
	Hostname  string     `json:"hostname"`
	HostID    string     `json:"host_id"`
	Peers     int        `json:"peers"`
	Disks     int        `json:"disks"`
	LastScan  *time.Time `json:"last_scan"`
	ScanError string     `json:"scan_error"`
}

func runStatus(ctx context.Context, e *env) int {
	st, err := e.client.Status(ctx)
	if err != nil {
		return e.fail(err)
	}
	if e.json {
		out := statusJSON{Version: st.Version, Hostname: st.Hostname, HostID: st.HostID,
			Peers: st.PeerCount, Disks: st.DiskCount, ScanError: st.ScanError}
		if !st.LastScan.IsZero() {
			out.LastScan = &st.LastScan
		}
		b, err := jsonLine(out)
		if err != nil {
			return e.fail(err)
		}
		return e.write(b)
	}
	var b bytes.Buffer
	kv := func(k, v string) { fmt.Fprintf(&b, "%s: %s\n", k, v) }
	kv("version", cell(st.Version))
	kv("host", cell(st.Hostname))
	kv("host id", cell(st.HostID))
	kv("peers", strconv.Itoa(st.PeerCount))
	kv("disks", strconv.Itoa(st.DiskCount))
	if st.LastScan.IsZero() {
		kv("last scan", "never")
	} else {
		kv("last scan", fmt.Sprintf("%s (%s)", st.LastScan.Format(time.RFC3339), control.Ago(time.Since(st.LastScan))))
	}
	if st.ScanError == "" {
		kv("scan error", "none")
	} else {
		kv("scan error", control.Escape(st.ScanError))
	}
	return e.write(b.Bytes())
}

// runAction returns the runner of refresh, announce or ping. They print
// nothing on success, with or without --json.
func runAction(name string) func(context.Context, *env) int {
	return func(ctx context.Context, e *env) int {
		var err error
		switch name {
		case "refresh":
			err = e.client.Refresh(ctx)
		case "announce":
			err = e.client.Announce(ctx)
		case "ping":
			err = e.client.Ping(ctx)
		}
		if err != nil {
			return e.fail(err)
		}
		return exitOK
	}
}

// cell is one untrusted field for people: escaped, "-" when empty.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return control.Escape(s)
}

// eventJSON is one line of monitor --json.
type eventJSON struct {
	Signal   string          `json:"signal"`
	Disk     *inventory.Disk `json:"disk,omitempty"`
	HostID   string          `json:"host_id,omitempty"`
	Hostname string          `json:"hostname,omitempty"`
	Reason   string          `json:"reason,omitempty"`
}

// formatEvent renders one monitor line (with its newline).
func formatEvent(ev dbusapi.Event, asJSON bool, now time.Time) ([]byte, error) {
	if asJSON {
		out := eventJSON{Signal: ev.Signal}
		switch ev.Signal {
		case dbusapi.SignalPeerJoined, dbusapi.SignalPeerLost:
			out.HostID, out.Hostname, out.Reason = ev.HostID, ev.Hostname, ev.Reason
		default:
			d := ev.Disk
			out.Disk = &d
		}
		return jsonLine(out)
	}
	var fields []string
	switch ev.Signal {
	case dbusapi.SignalPeerJoined:
		fields = []string{cell(ev.Hostname), "host-id=" + cell(ev.HostID)}
	case dbusapi.SignalPeerLost:
		fields = []string{cell(ev.Hostname), "host-id=" + cell(ev.HostID), "reason=" + cell(ev.Reason)}
	default:
		d := ev.Disk
		host := d.Hostname
		if host == "" {
			host = d.HostID
		}
		fields = []string{cell(host), cell(d.Device), cell(d.Type), cell(d.Label), cell(d.UUID),
			cell(strings.Join(d.Mountpoints, ","))}
	}
	return fmt.Appendf(nil, "%s %-15s  %s\n", now.Format("15:04:05"), ev.Signal, strings.Join(fields, "  ")), nil
}
