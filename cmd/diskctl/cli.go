package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/diskd/diskd/dbusapi"
	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/present"
)

// Exit statuses.
const (
	exitOK          = 0
	exitNotFound    = 1 // find selected nothing
	exitUsage       = 2 // bad command line
	exitUnreachable = 3 // no bus, or diskd is not on it
	exitFailed      = 4 // diskd refused or failed the request
	exitInterrupted = 130
)

// command is one diskctl command.
type command struct {
	name    string
	args    string // the argument part of the usage line
	summary string // one line for the overview
	help    string // the rest of `diskctl CMD --help`
	arg     present.ArgKind
	notify  bool // accepts --notify
	disks   bool // prints disks: takes the output options and --host
	all     bool // accepts --all
	run     func(ctx context.Context, e *env) int
}

func commands() []command {
	return []command{
		{name: "list", args: "[--all] [OPTIONS] [PATTERN]", arg: present.ArgOptional, disks: true, all: true, run: runList,
			summary: "every known disk, or those PATTERN matches",
			help: "PATTERN with * ? or [ is a shell glob, anything else a substring (ignoring case);\n" +
				"it is matched against " + diskstate.SearchedNames + ".\n" +
				"--all adds the disks diskd remembers that are not attached now, with a LAST-SEEN\n" +
				"column (JSON: \"present\": false, \"gone_at\", \"gone_reason\").\n" +
				"Several words are joined with one space.\n\n" + outputOptions},
		{name: "find", args: "[OPTIONS] TERM", arg: present.ArgRequired, disks: true, run: runFind,
			summary: "disks where one of " + diskstate.SearchedNames + " is TERM (else starts with it, else contains it)",
			help: "Exits with status 1 when no disk matches. Several words are joined with one space.\n\n" +
				outputOptions},
		{name: "info", args: "[-b] [--host NAME] TERM", arg: present.ArgRequired, disks: true, run: runInfo,
			summary: "every attribute of the disks find TERM selects, one a line",
			help: "Exits with status 1 when no disk matches. With --json, the disks as list --json\n" +
				"prints them. -b prints sizes in bytes only."},
		{name: "history", args: "TERM", arg: present.ArgRequired, run: runHistory,
			summary: "every place and time a matching disk was seen, newest first",
			help: "TERM matches uuid, partuuid, label, device, hostname or host id, now or in the past\n" +
				"(equal, else prefix, else substring, ignoring case). Exits with status 1 when nothing matches."},
		{name: "peers", run: runPeers, summary: "the other hosts heard on the network"},
		{name: "status", run: runStatus, summary: "version, host, counts and the last local scan"},
		{name: "refresh", run: runAction(diskstate.ActionRefresh), summary: "rescan the local disks now (root)"},
		{name: "announce", run: runAction(diskstate.ActionAnnounce), summary: "multicast the local disk list now (root)"},
		{name: "ping", run: runAction(diskstate.ActionPing), summary: "ask every peer to re-announce (root)"},
		{name: "monitor", notify: true, run: runMonitor,
			summary: "print changes as they happen, until interrupted",
			help: "Prints DiskAppeared, DiskDisappeared, DiskChanged, PeerJoined and PeerLost, one a line\n" +
				"(with --json one JSON object a line). It waits for diskd when diskd is not running.\n" +
				"--notify also shows a desktop notification (on the session bus) for every disk that\n" +
				"appears on another host; it keeps quiet for 10 seconds after diskd (re)starts, while\n" +
				"diskd learns the network."},
	}
}

func lookup(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// outputOptions is the help of the options of the commands that print
// disks, as lsblk names them.
const outputOptions = `Output options:
  -o, --output COLS   columns, comma-separated (+COLS adds to the default ones);
                      diskctl list -O shows them all
  -O, --output-all    every column
  -n, --noheadings    no header line
  -b, --bytes         sizes in bytes (else 1K = 1024, as lsblk prints them)
  -r, --raw           cells separated by one space, blanks escaped as \x20
  -P, --pairs         KEY="value" pairs; " \ $ and backquote escaped as \xNN
  --sort COLUMN       sort by COLUMN
  --host NAME         only the disks of host NAME (hostname or host id)
--json prints every key whatever the columns.`

// env is one run of diskctl: parsed options and where output goes.
type env struct {
	bus    string
	json   bool
	notify bool
	out    present.Output
	host   string
	all    bool
	args   []string // the command's arguments
	cmd    command
	stdout io.Writer
	stderr io.Writer
	client *dbusapi.Client
}

// usageError is a bad command line; its text is one line.
type usageError string

func (e usageError) Error() string { return string(e) }

// options is the parsed command line.
type options struct {
	bus     string
	json    bool
	notify  bool
	all     bool
	help    bool
	version bool
	command string
	args    []string
	out     present.Output
	host    string
	diskOpt string // the first output option or --host given, for errors
}

// parseArgs reads options anywhere on the line (until "--") and the
// command with its arguments.
func parseArgs(args []string) (options, error) {
	o := options{bus: "system"}
	var positional []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			positional = append(positional, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			positional = append(positional, a)
			continue
		}
		name, value, hasValue := strings.Cut(a, "=")
		// takeValue reads the value of an option that needs one.
		takeValue := func(what string) (string, error) {
			if hasValue {
				return value, nil
			}
			if i+1 >= len(args) {
				return "", usageError(fmt.Sprintf("option %s needs a value: %s", name, what))
			}
			i++
			return args[i], nil
		}
		if isDiskOption(name) && o.diskOpt == "" {
			o.diskOpt = name
		}
		switch name {
		case "-h", "--help":
			o.help = true
		case "-V", "--version":
			o.version = true
		case "--json":
			o.json = true
		case "--notify":
			o.notify = true
		case "--all":
			o.all = true
		case "--bus":
			if !hasValue {
				if i+1 >= len(args) {
					return o, usageError("option --bus needs a value: system, session or a D-Bus address")
				}
				i++
				value = args[i]
			}
			if err := dbusapi.CheckBus(value); err != nil || value == "none" {
				return o, usageError(fmt.Sprintf("option --bus: %q is not system, session or a D-Bus address (unix:path=...)", value))
			}
			o.bus = value
			continue
		case "-o", "--output", "--sort", "--host":
			v, err := takeValue("see diskctl list --help")
			if err != nil {
				return o, err
			}
			switch name {
			case "--sort":
				o.out.Sort = v
			case "--host":
				o.host = v
			default:
				if o.out.Columns, err = present.ParseColumns(v); err != nil {
					return o, usageError(fmt.Sprintf("option %s: %v", name, err))
				}
			}
			continue
		case "-O", "--output-all":
			o.out.Columns = present.AllColumns()
		case "-n", "--noheadings":
			o.out.NoHeadings = true
		case "-b", "--bytes":
			o.out.Bytes = true
		case "-r", "--raw":
			o.out.Raw = true
		case "-P", "--pairs":
			o.out.Pairs = true
		default:
			return o, usageError(fmt.Sprintf("unknown option %s", a))
		}
		if hasValue {
			return o, usageError(fmt.Sprintf("option %s takes no value", name))
		}
	}
	if len(positional) > 0 {
		o.command, o.args = positional[0], positional[1:]
	}
	if err := o.out.Check(); err != nil {
		return o, usageError(err.Error())
	}
	return o, nil
}

// isDiskOption reports whether name is an option of the commands that
// print disks.
func isDiskOption(name string) bool {
	switch name {
	case "-o", "--output", "-O", "--output-all", "-n", "--noheadings", "-b", "--bytes",
		"-r", "--raw", "-P", "--pairs", "--sort", "--host":
		return true
	}
	return false
}

// run is diskctl: it returns the exit status.
func run(ctx context.Context, argv []string, stdout, stderr io.Writer) int {
	o, err := parseArgs(argv)
	if err != nil {
		return usage(stderr, err)
	}
	if o.version {
		fmt.Fprintln(stdout, "diskctl", version)
		return exitOK
	}
	if o.command == "help" {
		if len(o.args) == 0 {
			writeHelp(stdout)
			return exitOK
		}
		o.command, o.args, o.help = o.args[0], nil, true
	}
	if o.command == "" {
		if o.help {
			writeHelp(stdout)
			return exitOK
		}
		return usage(stderr, usageError("no command given"))
	}
	cmd, ok := lookup(o.command)
	if !ok {
		return usage(stderr, usageError(fmt.Sprintf("unknown command %q", present.Escape(o.command))))
	}
	if o.help {
		writeCommandHelp(stdout, cmd)
		return exitOK
	}
	switch {
	case cmd.arg == present.ArgNone && len(o.args) > 0:
		return usage(stderr, usageError(fmt.Sprintf("%s takes no arguments (got %q)", cmd.name, present.Escape(o.args[0]))))
	case cmd.arg == present.ArgRequired && strings.TrimSpace(strings.Join(o.args, " ")) == "":
		words := strings.Fields(cmd.args) // the last is what is needed; options come before it
		return usage(stderr, usageError(fmt.Sprintf("%s needs %s", cmd.name, words[len(words)-1])))
	case o.notify && !cmd.notify:
		return usage(stderr, usageError(fmt.Sprintf("option --notify is for monitor, not %s", cmd.name)))
	case o.diskOpt != "" && !cmd.disks:
		return usage(stderr, usageError(fmt.Sprintf("option %s is for list, find and info, not %s", o.diskOpt, cmd.name)))
	case o.all && !cmd.all:
		return usage(stderr, usageError(fmt.Sprintf("option --all is for list, not %s", cmd.name)))
	}

	e := &env{bus: o.bus, json: o.json, notify: o.notify, all: o.all, out: o.out, host: o.host, args: o.args, cmd: cmd,
		stdout: stdout, stderr: stderr}
	c, err := dbusapi.Dial(ctx, o.bus)
	if err != nil {
		return e.fail(err)
	}
	defer c.Close()
	e.client = c
	return cmd.run(ctx, e)
}

func usage(w io.Writer, err error) int {
	fmt.Fprintf(w, "diskctl: %v (see diskctl --help)\n", err)
	return exitUsage
}

// fail prints why a request failed, in one line, and returns the exit
// status for it. Everything that came from the bus is escaped.
func (e *env) fail(err error) int {
	var (
		be *dbusapi.BusError
		nr *dbusapi.NotRunningError
		ce *dbusapi.CallError
	)
	switch {
	case errors.Is(err, context.Canceled):
		return exitInterrupted
	case errors.As(err, &nr) && !nr.NoReply:
		fmt.Fprintf(e.stderr, "diskctl: %v: start it with: %s\n", nr, startHint(e.bus))
		return exitUnreachable
	case errors.As(err, &nr):
		fmt.Fprintf(e.stderr, "diskctl: diskd did not answer on %s (%s): check it with: %s\n",
			dbusapi.DescribeBus(e.bus), dbusapi.BusName, statusHint(e.bus))
		return exitUnreachable
	case errors.As(err, &be):
		fmt.Fprintf(e.stderr, "diskctl: %s%s\n", present.Escape(be.Error()), busHint(e.bus))
		return exitUnreachable
	case errors.As(err, &ce) && ce.Name == dbusapi.ErrorAccessDenied:
		fmt.Fprintf(e.stderr, "diskctl: %s: access denied: only root may %s (try: sudo diskctl %s)\n",
			e.cmd.name, e.cmd.name, e.cmd.name)
		return exitFailed
	case errors.As(err, &ce):
		msg := ce.Message
		if msg == "" {
			msg = ce.Name
		}
		fmt.Fprintf(e.stderr, "diskctl: %s: %s\n", e.cmd.name, present.Escape(msg))
		return exitFailed
	}
	fmt.Fprintf(e.stderr, "diskctl: %s: %s\n", e.cmd.name, present.Escape(err.Error()))
	return exitFailed
}

// startHint says how to start diskd on the bus.
func startHint(bus string) string {
	if bus == "system" {
		return "systemctl start diskd"
	}
	return "diskd -d --bus " + bus
}

func statusHint(bus string) string {
	if bus == "system" {
		return "systemctl status diskd"
	}
	return "diskd status"
}

func busHint(bus string) string {
	switch bus {
	case "system":
		return " (is dbus running? systemctl status dbus)"
	case "session":
		return " (is DBUS_SESSION_BUS_ADDRESS set? run diskctl inside your login session)"
	}
	return ""
}

func writeHelp(w io.Writer) {
	fmt.Fprint(w, `Usage: diskctl [--bus BUS] [--json] COMMAND [ARGS]

Asks diskd, over D-Bus (org.diskd), which disks are attached to which host.

Commands:
`)
	type line struct{ usage, summary string }
	var lines []line
	for _, c := range commands() {
		lines = append(lines, line{commandUsage(c), c.summary})
	}
	lines = append(lines, line{"help [COMMAND]", "this overview, or one command's help"})
	width := 0
	for _, l := range lines {
		width = max(width, len(l.usage))
	}
	for _, l := range lines {
		fmt.Fprintf(w, "  %-*s  %s\n", width, l.usage, l.summary)
	}
	fmt.Fprint(w, `
Options (anywhere on the line; -- ends them):
  --bus BUS      system (default; honours DBUS_SYSTEM_BUS_ADDRESS), session,
                 or a D-Bus address such as unix:path=/run/diskd-test.sock
  --json         print JSON: one document (as the control socket's --json);
                 monitor prints one JSON object a line
  --notify       monitor only: desktop notifications for remote disks
  --all          list only: also the remembered disks not attached now
  -h, --help     show this help, or a command's: diskctl COMMAND --help
  -V, --version  print the version

Exit status: 0 ok, 1 find found nothing, 2 bad usage, 3 diskd (or the bus)
is unreachable, 4 diskd refused or failed the request.
`)
}

func commandUsage(c command) string {
	u := c.name
	if c.notify {
		u += " [--notify]"
	}
	if c.args != "" {
		u += " " + c.args
	}
	return u
}

func writeCommandHelp(w io.Writer, c command) {
	fmt.Fprintf(w, "Usage: diskctl [--bus BUS] [--json] %s\n\n%s.\n", commandUsage(c), upperFirst(c.summary))
	if c.help != "" {
		fmt.Fprintf(w, "\n%s\n", c.help)
	}
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
