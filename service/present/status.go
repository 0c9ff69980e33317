package present

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/diskd/diskd/service/diskstate"
)

// StatusScope says how much of a Status is known: the control socket knows
// everything, D-Bus properties carry the summary only.
type StatusScope int

// The scopes of a status.
const (
	StatusFull    StatusScope = iota // every line, packet counters and extra lines included
	StatusSummary                    // version, host, host id, counts, last scan, scan error
)

// Status is the human form of a status: "key: value" lines (version, host,
// host id, started, peers, disks, last scan as RFC 3339 and how long ago or
// "never", scan error or "none"; in full scope also packets in, out and
// dropped, drops by reason as "reason=N ..." or "none", and the extra
// lines). Untrusted values are escaped.
func Status(st diskstate.Status, now time.Time, scope StatusScope) []byte {
	var b bytes.Buffer
	kv := func(k, v string) { fmt.Fprintf(&b, "%s: %s\n", k, v) }
	kv("version", cell(st.Version))
	kv("host", cell(st.Hostname))
	kv("host id", cell(st.HostID))
	if !st.Started.IsZero() {
		kv("started", fmt.Sprintf("%s (%s)", st.Started.Format(time.RFC3339), Ago(now.Sub(st.Started))))
	}
	kv("peers", strconv.Itoa(st.Peers))
	kv("disks", strconv.Itoa(st.Disks))
	if st.LastScan.IsZero() {
		kv("last scan", "never")
	} else {
		kv("last scan", fmt.Sprintf("%s (%s)", st.LastScan.Format(time.RFC3339), Ago(now.Sub(st.LastScan))))
	}
	if st.ScanError == "" {
		kv("scan error", "none")
	} else {
		kv("scan error", Escape(st.ScanError))
	}
	if scope == StatusSummary {
		return b.Bytes()
	}
	kv("packets in", strconv.FormatUint(st.PacketsIn, 10))
	kv("packets out", strconv.FormatUint(st.PacketsOut, 10))
	kv("packets dropped", strconv.FormatUint(st.PacketsDropped, 10))
	if len(st.Drops) == 0 {
		kv("drops by reason", "none")
	} else {
		parts := make([]string, 0, len(st.Drops))
		for _, r := range slices.Sorted(maps.Keys(st.Drops)) {
			parts = append(parts, fmt.Sprintf("%s=%d", Escape(r), st.Drops[r]))
		}
		kv("drops by reason", strings.Join(parts, " "))
	}
	for _, e := range st.Extra {
		kv(cell(e.Key), Escape(e.Value))
	}
	return b.Bytes()
}

// statusJSON is status --json in full scope. Times are RFC 3339, null when
// unknown.
type statusJSON struct {
	Version        string            `json:"version"`
	Hostname       string            `json:"hostname"`
	HostID         string            `json:"host_id"`
	Started        *time.Time        `json:"started"`
	Peers          int               `json:"peers"`
	Disks          int               `json:"disks"`
	LastScan       *time.Time        `json:"last_scan"`
	ScanError      string            `json:"scan_error"`
	PacketsIn      uint64            `json:"packets_in"`
	PacketsOut     uint64            `json:"packets_out"`
	PacketsDropped uint64            `json:"packets_dropped"`
	Drops          map[string]uint64 `json:"drops"`
	Extra          map[string]string `json:"extra"`
}

// statusSummaryJSON is status --json in summary scope: the keys of the full
// form that D-Bus carries.
type statusSummaryJSON struct {
	Version   string     `json:"version"`
	Hostname  string     `json:"hostname"`
	HostID    string     `json:"host_id"`
	Peers     int        `json:"peers"`
	Disks     int        `json:"disks"`
	LastScan  *time.Time `json:"last_scan"`
	ScanError string     `json:"scan_error"`
}

// StatusJSON is the --json form of a status: one line holding one object
// with version, hostname, host_id, started (full scope), peers, disks,
// last_scan, scan_error and, in full scope, packets_in, packets_out,
// packets_dropped, drops (by reason) and extra (an object). Unknown times
// are null.
func StatusJSON(st diskstate.Status, scope StatusScope) ([]byte, error) {
	opt := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		return &t
	}
	if scope == StatusSummary {
		return JSONLine(statusSummaryJSON{Version: st.Version, Hostname: st.Hostname, HostID: st.HostID,
			Peers: st.Peers, Disks: st.Disks, LastScan: opt(st.LastScan), ScanError: st.ScanError})
	}
	out := statusJSON{Version: st.Version, Hostname: st.Hostname, HostID: st.HostID,
		Started: opt(st.Started), Peers: st.Peers, Disks: st.Disks, LastScan: opt(st.LastScan),
		ScanError: st.ScanError, PacketsIn: st.PacketsIn, PacketsOut: st.PacketsOut,
		PacketsDropped: st.PacketsDropped, Drops: map[string]uint64{}, Extra: map[string]string{}}
	maps.Copy(out.Drops, st.Drops)
	for _, e := range st.Extra {
		out.Extra[e.Key] = e.Value
	}
	return JSONLine(out)
}

// peerJSON is one peer in peers --json.
type peerJSON struct {
	HostID          string    `json:"host_id"`
	Hostname        string    `json:"hostname"`
	Address         string    `json:"address"`
	BootID          string    `json:"boot_id"`
	Disks           int       `json:"disks"`
	LastHeard       time.Time `json:"last_heard"`
	IntervalSeconds float64   `json:"interval_seconds"`
	TimeoutSeconds  float64   `json:"timeout_seconds"`
	Authenticated   bool      `json:"authenticated"`
}

// PeersJSON is the --json form of a peer list: one line holding an array
// (never null) of objects with host_id, hostname, address, boot_id, disks,
// last_heard (RFC 3339), interval_seconds, timeout_seconds, authenticated.
func PeersJSON(peers []diskstate.Peer) ([]byte, error) {
	out := make([]peerJSON, len(peers))
	for i, p := range peers {
		out[i] = peerJSON{HostID: p.HostID, Hostname: p.Hostname, Address: p.Address,
			BootID: p.BootID, Disks: p.Disks, LastHeard: p.LastHeard,
			IntervalSeconds: p.Interval.Seconds(), TimeoutSeconds: p.Timeout.Seconds(),
			Authenticated: p.Authenticated}
	}
	return JSONLine(out)
}

// JSONLine encodes v as one line of JSON. encoding/json escapes control
// characters (and U+2028, U+2029) inside strings, so the line cannot
// break; HTML escaping is off.
func JSONLine(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encode JSON: %w", err)
	}
	return b.Bytes(), nil
}

// StatusLine is the one-line summary of a status that systemd shows
// (STATUS=): local disks, remote disks and peers, and a failing scan.
func StatusLine(st diskstate.Status) string {
	s := fmt.Sprintf("%d local disks, %d disks on %d peers", st.LocalDisks, st.Disks-st.LocalDisks, st.Peers)
	if st.ScanError != "" {
		s += "; scan failing: " + Escape(st.ScanError)
	}
	return s
}
