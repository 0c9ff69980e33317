package control

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/inventory"
	"github.com/diskd/diskd/service/present"
)

// command is one entry of the command table: its name, how it is used,
// what help says of it, what the interactive client completes after it, and
// the handler that answers it.
type command struct {
	name  string
	usage string
	help  string
	json  bool // accepts --json
	// disks: prints disks, so it takes the output options (-o, -O, -n, -b,
	// -r, -P, --sort) and --host.
	disks bool
	all   bool // accepts --all
	arg   present.ArgKind
	// complete says what Tab offers for the argument: "" nothing, "disk"
	// labels and uuids (and host names when hosts is set), "command" the
	// command names.
	complete string
	hosts    bool // the argument also matches host names
	// run answers a parsed request with the answer's lines (each ending in
	// "\n"), or an error whose text becomes the ERR message.
	run func(s *Server, ctx context.Context, req request) ([]byte, error)
}

// commands is the command table, in the order help shows it.
func commands() []command {
	cmds := []command{
		{name: "help", usage: "help [COMMAND]", arg: present.ArgOptional, complete: "command",
			help: "show the commands, or one command's usage and help",
			run:  func(_ *Server, _ context.Context, req request) ([]byte, error) { return helpText(req.arg) }},
		{name: "list", usage: "list [--json] [--all] [OPTIONS] [PATTERN]", json: true, all: true, disks: true, arg: present.ArgOptional, complete: "disk", hosts: true,
			help: "every known disk (--all: remembered absent ones too); PATTERN (substring, or glob with * ? [) matches " + diskstate.SearchedNames,
			run: func(s *Server, _ context.Context, req request) ([]byte, error) {
				if !req.all {
					return disks(req, inventory.OnHost(s.Inv.Match(req.arg), req.host))
				}
				all := append(inventory.OnHost(s.Inv.Match(req.arg), req.host),
					inventory.OnHost(inventory.MatchDisks(s.absent(s.memoryDisks()), req.arg), req.host)...)
				if req.json {
					return present.DisksJSON(all)
				}
				return present.DisksTableAll(all), nil
			}},
		{name: "find", usage: "find [--json] [OPTIONS] TERM", json: true, disks: true, arg: present.ArgRequired, complete: "disk", hosts: true,
			help: "disks where one of " + diskstate.SearchedNames + " is TERM (else starts with it, else contains it); when none is attached, where such a disk was last seen",
			run: func(s *Server, _ context.Context, req request) ([]byte, error) {
				if found := inventory.FindDisks(inventory.OnHost(s.Inv.Disks(), req.host), req.arg); len(found) > 0 || s.Memory == nil {
					return disks(req, found)
				}
				gone := s.absent(s.Memory.Find(req.arg))
				if req.json {
					return present.DisksJSON(gone)
				}
				return present.GoneLines(gone, s.now()), nil
			}},
		{name: "info", usage: "info [--json] [-b] [--host NAME] TERM", json: true, disks: true, arg: present.ArgRequired, complete: "disk", hosts: true,
			help: "every attribute of the disks find TERM selects, one a line",
			run: func(s *Server, _ context.Context, req request) ([]byte, error) {
				found := inventory.FindDisks(inventory.OnHost(s.Inv.Disks(), req.host), req.arg)
				if len(found) == 0 {
					return nil, fmt.Errorf("no disk matches %q", req.arg)
				}
				if req.json {
					return present.DisksJSON(found)
				}
				var b []byte
				for i := range found {
					b = append(b, present.DiskInfo(&found[i], req.out.Bytes)...)
				}
				return b, nil
			}},
		{name: "history", usage: "history [--json] TERM", json: true, arg: present.ArgRequired, complete: "disk",
			help: "every place and time a matching disk was seen, newest first",
			run: func(s *Server, _ context.Context, req request) ([]byte, error) {
				if s.Memory == nil {
					return nil, fmt.Errorf("history is not available: this daemon keeps no memory")
				}
				hs := s.Memory.History(req.arg)
				if req.json {
					return present.HistoryJSON(hs)
				}
				return present.HistoryTable(hs), nil
			}},
		{name: "peers", usage: "peers [--json]", json: true, help: "the hosts heard on the network",
			run: func(s *Server, _ context.Context, req request) ([]byte, error) {
				if req.json {
					return present.PeersJSON(s.Inv.Peers())
				}
				return present.PeersTable(s.Inv.Peers(), s.now()), nil
			}},
		{name: "status", usage: "status [--json]", json: true, help: "version, host, counts, last scan, packet counters",
			run: func(s *Server, _ context.Context, req request) ([]byte, error) {
				if req.json {
					return present.StatusJSON(s.status(), present.StatusFull)
				}
				return present.Status(s.status(), s.now(), present.StatusFull), nil
			}},
	}
	for _, a := range diskstate.ActionList() {
		cmds = append(cmds, command{name: string(a), usage: string(a), help: actionHelp(a),
			run: func(s *Server, ctx context.Context, _ request) ([]byte, error) { return nil, s.action(ctx, a) }})
	}
	cmds = append(cmds, command{name: "quit", usage: "quit", help: "close the connection",
		run: func(*Server, context.Context, request) ([]byte, error) { return nil, nil }})
	// -h and --help answer every command's help instead of running it.
	for i := range cmds {
		c := cmds[i]
		cmds[i].run = func(s *Server, ctx context.Context, req request) ([]byte, error) {
			if req.help {
				return commandHelp(c), nil
			}
			return c.run(s, ctx, req)
		}
	}
	return cmds
}

// actionHelp is the help line of an action.
func actionHelp(a diskstate.Action) string {
	switch a {
	case diskstate.ActionRefresh:
		return "rescan local disks now"
	case diskstate.ActionAnnounce:
		return "multicast the local disk list now"
	case diskstate.ActionPing:
		return "ask every peer to re-announce"
	}
	return string(a)
}

// CommandInfo describes a command to clients: for completion and help.
type CommandInfo struct {
	Name  string
	Usage string
	Help  string
	JSON  bool // accepts --json
	// Complete says what may follow the command: "" nothing, "disk" disk
	// labels and uuids, and host names too when Hosts is set; "command" a
	// command name.
	Complete string
	// Hosts says that the command's argument also matches host names (list
	// does, find does not).
	Hosts bool
}

// Commands returns the control protocol's commands in the order help shows
// them.
func Commands() []CommandInfo {
	var out []CommandInfo
	for _, c := range commands() {
		out = append(out, CommandInfo{Name: c.name, Usage: c.usage, Help: c.help, JSON: c.json,
			Complete: c.complete, Hosts: c.hosts})
	}
	return out
}

// Request is a request line as the server understands it.
type Request struct {
	Command string // lower case; empty for a blank line
	JSON    bool   // --json was given
	Arg     string // the argument, surrounding blanks removed
}

// ParseRequest parses a request line as the server does, so that a client
// can tell what it asked for; its error is the server's ERR message
// (unescaped).
func ParseRequest(line string) (Request, error) {
	req, err := parseRequest(line)
	return Request{Command: req.cmd, JSON: req.json, Arg: req.arg}, err
}

func lookupCommand(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// OutputOptionsHelp describes the options of the commands that print
// disks, for `COMMAND --help`.
const OutputOptionsHelp = `Options:
  --json               one JSON document: an array of disk objects (every key)
  -o, --output COLS    columns, comma-separated (+COLS adds to the default ones)
  -O, --output-all     every column
  -n, --noheadings     no header line
  -b, --bytes          sizes in bytes (else 1K = 1024, as lsblk prints them)
  -r, --raw            cells separated by one space, blanks escaped as \x20
  -P, --pairs          KEY="value" pairs; " \ $ and backquote as \xNN
  --sort COLUMN        sort by COLUMN
  --host NAME          only the disks of host NAME (hostname or host id)
  -h, --help           this help
`

// request is a parsed request line.
type request struct {
	cmd  string // lower-cased command word; empty for a blank line
	json bool
	help bool // -h or --help: answer the command's help
	out  present.Output
	host string // --host: only this host's disks
	all  bool
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
		return req, unknownCommand(word)
	}
	dashdash := false
options:
	for strings.HasPrefix(rest, "-") {
		opt, after := cutWord(rest)
		if opt == "--" {
			dashdash, rest = true, after
			break
		}
		name, value, hasValue := strings.Cut(opt, "=")
		// takeValue reads the option's value: after "=", or the next word.
		takeValue := func() (string, error) {
			if hasValue {
				return value, nil
			}
			v, more := cutWord(after)
			if v == "" {
				return "", fmt.Errorf(`usage: %s (option "%s" needs a value)`, spec.usage, name)
			}
			after = more
			return v, nil
		}
		var err error
		switch {
		case name == "-h" || name == "--help":
			req.help = true
		case (name == "--json" || name == "-J") && spec.json:
			req.json = true
		case name == "--all" && spec.all:
			req.all = true
		case !strings.HasPrefix(name, "--") && !isShortOption(name, spec):
			// A word such as "-2019-" that is no option starts the
			// argument (a label may begin with a dash); "--" forces it.
			break options
		case !spec.disks:
			return req, fmt.Errorf(`usage: %s (unknown option "%s")`, spec.usage, opt)
		case name == "-o" || name == "--output":
			var v string
			if v, err = takeValue(); err == nil {
				req.out.Columns, err = present.ParseColumns(v)
			}
		case name == "-O" || name == "--output-all":
			req.out.Columns = present.AllColumns()
		case name == "-n" || name == "--noheadings":
			req.out.NoHeadings = true
		case name == "-b" || name == "--bytes":
			req.out.Bytes = true
		case name == "-r" || name == "--raw":
			req.out.Raw = true
		case name == "-P" || name == "--pairs":
			req.out.Pairs = true
		case name == "--sort":
			req.out.Sort, err = takeValue()
		case name == "--host":
			req.host, err = takeValue()
		default:
			return req, fmt.Errorf(`usage: %s (unknown option "%s")`, spec.usage, opt)
		}
		if err != nil {
			return req, err
		}
		if hasValue && name != "-o" && name != "--output" && name != "--sort" && name != "--host" {
			return req, fmt.Errorf(`usage: %s (option "%s" takes no value)`, spec.usage, name)
		}
		rest = after
	}
	if err := req.out.Check(); err != nil {
		return req, fmt.Errorf("usage: %s (%w)", spec.usage, err)
	}
	if req.help {
		return req, nil
	}
	if spec.json && !dashdash {
		if i := len(rest) - len(" --json"); i >= 0 && strings.HasSuffix(rest, "--json") &&
			unicode.IsSpace(rune(rest[i])) {
			req.json, rest = true, strings.TrimRightFunc(rest[:i], unicode.IsSpace)
		}
	}
	if (spec.arg == present.ArgNone && rest != "") || (spec.arg == present.ArgRequired && rest == "") {
		return req, fmt.Errorf("usage: %s", spec.usage)
	}
	req.arg = rest
	return req, nil
}

// isShortOption reports whether name is a one-dash option that spec
// takes.
func isShortOption(name string, spec command) bool {
	switch name {
	case "-h":
		return true
	case "-J":
		return spec.json
	case "-o", "-O", "-n", "-b", "-r", "-P":
		return spec.disks
	}
	return false
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

func (s *Server) action(ctx context.Context, name diskstate.Action) error {
	if s.Actions == nil {
		return fmt.Errorf("%s is not available in this daemon", name)
	}
	if err := name.Run(ctx, s.Actions, s.ActionTimeout); err != nil {
		s.log().Warn("control socket: action failed", "action", name, "err", err)
		return fmt.Errorf("%s failed: %w", name, err)
	}
	return nil
}

// unknownCommand is the error for a word that is no command; it names the
// command the word most likely meant, when one is close.
func unknownCommand(word string) error {
	if s := suggest(word); s != "" {
		return fmt.Errorf(`unknown command "%s"; did you mean "%s"?`, word, s)
	}
	return fmt.Errorf(`unknown command "%s"`, word)
}

// suggest returns the command that word most likely meant, or "" when none
// is close: the other programs' words for quit and help (exit, ?, ls), a
// command that word is the start of (at least three letters, one command),
// else the command nearest by edit distance (a transposed pair counts as
// one edit), when at most one edit away, or two from a name of six letters
// or more. Ties go to the command help shows first.
func suggest(word string) string {
	w := strings.ToLower(word)
	switch w {
	case "exit", "bye", "logout":
		return "quit"
	case "?", "h", "-h", "--help":
		return "help"
	case "ls":
		return "list"
	}
	cmds := commands()
	if utf8.RuneCountInString(w) >= 3 {
		var starts []string
		for _, c := range cmds {
			if strings.HasPrefix(c.name, w) {
				starts = append(starts, c.name)
			}
		}
		if len(starts) == 1 {
			return starts[0]
		}
	}
	if utf8.RuneCountInString(w) > maxNameRunes+2 {
		return "" // too long to be two edits from any name
	}
	best, bestDist := "", 3
	for _, c := range cmds {
		limit := 1
		if len(c.name) >= 6 {
			limit = 2
		}
		if d := editDistance(w, c.name); d <= limit && d < bestDist {
			best, bestDist = c.name, d
		}
	}
	return best
}

// maxNameRunes is longer than every command name.
const maxNameRunes = 16

// editDistance is the optimal string alignment distance between a and b, in
// runes: insertions, deletions, substitutions and transpositions of two
// neighbours, each one edit.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	// Three rows of the table: two back, one back, and this one.
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}

// helpText is the answer of help: with no argument each command's usage and
// help, aligned; with a command name that command's usage and help.
func helpText(arg string) ([]byte, error) {
	if arg != "" {
		word, rest := cutWord(arg)
		if rest != "" {
			return nil, fmt.Errorf("usage: help [COMMAND]")
		}
		c, ok := lookupCommand(strings.ToLower(word))
		if !ok {
			return nil, unknownCommand(word)
		}
		return commandHelp(c), nil
	}
	var b bytes.Buffer
	cmds := commands()
	width := 0
	for _, c := range cmds {
		width = max(width, len(c.usage))
	}
	for _, c := range cmds {
		fmt.Fprintf(&b, "%-*s  %s\n", width, c.usage, c.help)
	}
	return b.Bytes(), nil
}

// memoryDisks is every remembered disk; none without Memory.
func (s *Server) memoryDisks() []diskstate.Disk {
	if s.Memory == nil {
		return nil
	}
	return s.Memory.Disks()
}

// absent keeps the remembered disks that are not present now.
func (s *Server) absent(ds []diskstate.Disk) []diskstate.Disk {
	return slices.DeleteFunc(ds, func(d diskstate.Disk) bool { return d.Present })
}

func disks(req request, disks []diskstate.Disk) ([]byte, error) {
	if req.json {
		return present.DisksJSON(disks)
	}
	return present.DisksOutput(disks, req.out), nil
}

// commandHelp is the answer of `COMMAND --help`: its usage, what it does,
// and the options of the commands that print disks.
func commandHelp(c command) []byte {
	b := fmt.Appendf(nil, "usage: %s\n%s\n", c.usage, c.help)
	if c.disks {
		b = append(b, OutputOptionsHelp...)
	} else if c.json {
		b = append(b, "Options:\n  --json      one JSON document\n  -h, --help  this help\n"...)
	}
	return b
}

// status returns the daemon's status, or what the inventory knows when the
// daemon gave no Actions.
func (s *Server) status() diskstate.Status {
	if s.Actions != nil {
		return s.Actions.Status()
	}
	peers, disks := s.Inv.Counts()
	scan := s.Inv.Scan()
	st := diskstate.Status{HostID: s.Inv.HostID(), Hostname: s.Inv.Hostname(), Peers: peers, Disks: disks,
		LastScan: scan.At}
	if scan.Err != nil {
		st.ScanError = scan.Err.Error()
	}
	return st
}
