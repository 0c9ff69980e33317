package control

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/diskd/diskd/service/inventory"
)

// argKind says whether a command takes an argument (the rest of the line).
type argKind int

const (
	argNone argKind = iota
	argOptional
	argRequired
)

type cmdSpec struct {
	name  string
	usage string
	help  string
	json  bool // accepts --json
	arg   argKind
}

// commandSpecs lists the commands in the order help shows them.
func commandSpecs() []cmdSpec {
	return []cmdSpec{
		{name: "help", usage: "help", help: "show the commands"},
		{name: "list", usage: "list [--json] [PATTERN]", json: true, arg: argOptional,
			help: "every known disk; PATTERN (substring, or glob with * ? [) matches uuid, partuuid, label, device or host"},
		{name: "find", usage: "find [--json] TERM", json: true, arg: argRequired,
			help: "disks whose uuid, partuuid or label is TERM (else starts with it, else contains it)"},
		{name: "peers", usage: "peers [--json]", json: true, help: "the hosts heard on the network"},
		{name: "status", usage: "status [--json]", json: true, help: "version, host, counts, last scan, packet counters"},
		{name: "refresh", usage: "refresh", help: "rescan local disks now"},
		{name: "announce", usage: "announce", help: "multicast the local disk list now"},
		{name: "ping", usage: "ping", help: "ask every peer to re-announce"},
		{name: "quit", usage: "quit", help: "close the connection"},
	}
}

func lookupCommand(name string) (cmdSpec, bool) {
	for _, c := range commandSpecs() {
		if c.name == name {
			return c, true
		}
	}
	return cmdSpec{}, false
}

// request is a parsed request line.
type request struct {
	cmd  string // lower-cased command word; empty for a blank line
	json bool
	arg  string
}

// parseRequest splits a request line into command, options and argument.
// Its error texts are raw: the caller escapes the whole ERR message once.
func parseRequest(line string) (request, error) {
	rest := strings.TrimSpace(line)
	if rest == "" {
		return request{}, nil
	}
	word, rest := cutWord(rest)
	req := request{cmd: strings.ToLower(word)}
	spec, ok := lookupCommand(req.cmd)
	if !ok {
		return req, fmt.Errorf(`unknown command "%s"`, word)
	}
	dashdash := false
	for strings.HasPrefix(rest, "--") {
		opt, after := cutWord(rest)
		if opt == "--" {
			dashdash, rest = true, after
			break
		}
		if opt == "--json" && spec.json {
			req.json, rest = true, after
			continue
		}
		return req, fmt.Errorf(`usage: %s (unknown option "%s")`, spec.usage, opt)
	}
	if spec.json && !dashdash {
		if i := len(rest) - len(" --json"); i >= 0 && strings.HasSuffix(rest, "--json") &&
			unicode.IsSpace(rune(rest[i])) {
			req.json, rest = true, strings.TrimRightFunc(rest[:i], unicode.IsSpace)
		}
	}
	if (spec.arg == argNone && rest != "") || (spec.arg == argRequired && rest == "") {
		return req, fmt.Errorf("usage: %s", spec.usage)
	}
	req.arg = rest
	return req, nil
}

// cutWord returns the first blank-separated word of s and the rest of s with
// its leading blanks removed.
func cutWord(s string) (word, rest string) {
	i := strings.IndexFunc(s, unicode.IsSpace)
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimLeftFunc(s[i:], unicode.IsSpace)
}

// run executes a parsed request and returns the answer's lines (each ending
// in "\n"), or an error whose text becomes the ERR message.
func (s *Server) run(ctx context.Context, req request) ([]byte, error) {
	var b bytes.Buffer
	switch req.cmd {
	case "help":
		writeHelp(&b)
	case "list":
		return s.disks(req, s.Inv.Match(req.arg))
	case "find":
		return s.disks(req, s.Inv.Find(req.arg))
	case "peers":
		if req.json {
			return PeersJSON(s.Inv.Peers())
		}
		return PeersTable(s.Inv.Peers(), s.now()), nil
	case "status":
		st := s.status()
		if req.json {
			return jsonLine(statusToJSON(st))
		}
		s.writeStatus(&b, st)
	case "refresh", "announce", "ping":
		return nil, s.action(ctx, req.cmd)
	case "quit":
	default:
		return nil, fmt.Errorf(`unknown command "%s"`, req.cmd)
	}
	return b.Bytes(), nil
}

func (s *Server) action(ctx context.Context, name string) error {
	if s.Actions == nil {
		return fmt.Errorf("%s is not available in this daemon", name)
	}
	ctx, cancel := context.WithTimeout(ctx, orDefault(s.ActionTimeout, DefaultActionTimeout))
	defer cancel()
	var err error
	switch name {
	case "refresh":
		err = s.Actions.Refresh(ctx)
	case "announce":
		err = s.Actions.Announce(ctx)
	case "ping":
		err = s.Actions.Ping(ctx)
	}
	if err != nil {
		s.log().Warn("control socket: action failed", "action", name, "err", err)
		return fmt.Errorf("%s failed: %w", name, err)
	}
	return nil
}

func writeHelp(b *bytes.Buffer) {
	specs := commandSpecs()
	width := 0
	for _, c := range specs {
		width = max(width, len(c.usage))
	}
	for _, c := range specs {
		fmt.Fprintf(b, "%-*s  %s\n", width, c.usage, c.help)
	}
}

// jsonLine encodes v as one line of JSON. encoding/json escapes control
// characters (and U+2028, U+2029) inside strings, so the line cannot break.
func jsonLine(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encode JSON: %w", err)
	}
	return b.Bytes(), nil
}

func (s *Server) disks(req request, disks []inventory.Disk) ([]byte, error) {
	if req.json {
		return DisksJSON(disks)
	}
	return DisksTable(disks), nil
}

// DisksTable is the human form of a disk list: a header line
// HOST DEVICE TYPE LABEL UUID MOUNTED and one aligned line per disk, every
// field escaped, "-" for an empty field; nothing when there are no disks.
func DisksTable(disks []inventory.Disk) []byte {
	rows := make([][]string, 0, len(disks))
	for _, d := range disks {
		host := d.Hostname
		if host == "" {
			host = d.HostID
		}
		rows = append(rows, []string{cell(host), cell(d.Device), cell(d.Type), cell(d.Label),
			cell(d.UUID), cell(strings.Join(d.Mountpoints, ","))})
	}
	var b bytes.Buffer
	writeTable(&b, []string{"HOST", "DEVICE", "TYPE", "LABEL", "UUID", "MOUNTED"}, rows)
	return b.Bytes()
}

// PeersTable is the human form of a peer list: a header line
// HOSTNAME HOST-ID ADDRESS DISKS LAST-HEARD AUTH and one aligned line per
// peer, last heard counted back from now; nothing when there are no peers.
func PeersTable(peers []inventory.Peer, now time.Time) []byte {
	rows := make([][]string, 0, len(peers))
	for _, p := range peers {
		auth := "no"
		if p.Authenticated {
			auth = "yes"
		}
		rows = append(rows, []string{cell(p.Hostname), cell(p.HostID), cell(p.Address),
			strconv.Itoa(p.Disks), Ago(now.Sub(p.LastHeard)), p.Timeout.String(), auth})
	}
	var b bytes.Buffer
	writeTable(&b, []string{"HOSTNAME", "HOST-ID", "ADDRESS", "DISKS", "LAST-HEARD", "TIMEOUT", "AUTH"}, rows)
	return b.Bytes()
}

// cell escapes one table field; an empty field shows as "-".
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return Escape(s)
}

// writeTable writes an aligned table: a header line and one line per row,
// columns separated by two spaces, widths counted in runes of the (already
// escaped) text. It writes nothing when there are no rows. A first cell that
// would make its line look like the end of the answer ("OK", "ERR ...") gets
// its first letter escaped here, before the widths are measured.
func writeTable(b *bytes.Buffer, header []string, rows [][]string) {
	if len(rows) == 0 {
		return
	}
	for _, r := range rows {
		if c := r[0]; c == "OK" || c == "ERR" || strings.HasPrefix(c, "ERR ") {
			r[0] = fmt.Sprintf(`\x%02x`, c[0]) + c[1:]
		}
	}
	widths := make([]int, len(header))
	for _, r := range append([][]string{header}, rows...) {
		for i, c := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	for _, r := range append([][]string{header}, rows...) {
		for i, c := range r {
			b.WriteString(c)
			if i == len(r)-1 {
				break
			}
			b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)+2))
		}
		b.WriteByte('\n')
	}
}

// Ago formats how long ago something happened, for people: "2.1s ago",
// "42s ago", "3m05s ago", "2h07m ago", "3d04h ago". A negative duration
// (clock skew) counts as zero.
func Ago(d time.Duration) string {
	d = max(d, 0)
	switch {
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fs ago", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds ago", int(d/time.Minute), int(d%time.Minute/time.Second))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm ago", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%dd%02dh ago", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
}

// status returns the daemon's status, or what the inventory knows when the
// daemon gave no Actions.
func (s *Server) status() Status {
	if s.Actions != nil {
		return s.Actions.Status()
	}
	peers, disks := s.Inv.Counts()
	scan := s.Inv.Scan()
	st := Status{HostID: s.Inv.HostID(), Hostname: s.Inv.Hostname(), Peers: peers, Disks: disks,
		LastScan: scan.At}
	if scan.Err != nil {
		st.ScanError = scan.Err.Error()
	}
	return st
}

func (s *Server) writeStatus(b *bytes.Buffer, st Status) {
	now := s.now()
	kv := func(k, v string) { fmt.Fprintf(b, "%s: %s\n", k, v) }
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
func PeersJSON(peers []inventory.Peer) ([]byte, error) {
	out := make([]peerJSON, len(peers))
	for i, p := range peers {
		out[i] = peerJSON{HostID: p.HostID, Hostname: p.Hostname, Address: p.Address,
			BootID: p.BootID, Disks: p.Disks, LastHeard: p.LastHeard,
			IntervalSeconds: p.Interval.Seconds(), TimeoutSeconds: p.Timeout.Seconds(),
			Authenticated: p.Authenticated}
	}
	return jsonLine(out)
}

// statusJSON is status --json. Times are RFC 3339, null when unknown.
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

func statusToJSON(st Status) statusJSON {
	opt := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		return &t
	}
	out := statusJSON{Version: st.Version, Hostname: st.Hostname, HostID: st.HostID,
		Started: opt(st.Started), Peers: st.Peers, Disks: st.Disks, LastScan: opt(st.LastScan),
		ScanError: st.ScanError, PacketsIn: st.PacketsIn, PacketsOut: st.PacketsOut,
		PacketsDropped: st.PacketsDropped, Drops: map[string]uint64{}, Extra: map[string]string{}}
	maps.Copy(out.Drops, st.Drops)
	for _, e := range st.Extra {
		out.Extra[e.Key] = e.Value
	}
	return out
}
