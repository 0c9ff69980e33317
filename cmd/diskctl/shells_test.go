package main

// Tests of what the package installs for diskctl beside the binary: the
// completion in bash, zsh and fish, each run in its own shell against a
// real diskd on a real bus, its help's defaults and diskctl(1).

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/diskd/diskd/dbusapi/dbustest"
	"github.com/diskd/diskd/service/testbed"
)

// completer runs a shell's completion of diskctl for a command line.
type completer struct {
	shell string
	file  string // the completion file for diskctl
	env   []string
}

func newCompleters(t *testing.T, env []string) []completer {
	t.Helper()
	testbed.RequireTools(t, "bash", "zsh", "fish", "timeout", "grep", "sed")
	// zsh: compinit's dump, made by the first run, makes the others fast.
	zenv := append(slices.Clone(env), "ZSH_COMPDUMP="+filepath.Join(t.TempDir(), "zcompdump"))
	return []completer{
		{"bash", dbustest.File(t, "packaging/bash-completion/diskctl"), env},
		{"zsh", dbustest.File(t, "packaging/zsh-completion/_diskctl"), zenv},
		{"fish", dbustest.File(t, "packaging/fish-completion/diskctl.fish"), env},
	}
}

// complete returns the candidates the shell offers after line (words
// separated by one space; a trailing space starts an empty word), as the
// shell would insert them (bash quotes them).
func (c completer) complete(t *testing.T, line string) []string {
	t.Helper()
	var cmd *exec.Cmd
	switch c.shell {
	case "bash":
		script := `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); COMP_LINE="$*"; _diskctl; printf '%s\n' "${COMPREPLY[@]}"`
		cmd = exec.Command("bash", append([]string{"--norc", "-c", script, "bash", c.file}, strings.Split(line, " ")...)...)
	case "zsh":
		harness := dbustest.File(t, "packaging/completion-test/zsh-complete.zsh")
		cmd = exec.Command("zsh", "-f", harness, filepath.Dir(c.file), line)
	case "fish":
		cmd = exec.Command("fish", "--no-config", "-c", `source $argv[1]; complete -C $argv[2]`, c.file, line)
	}
	cmd.Env = c.env
	return testbed.Completions(t, c.shell, line, cmd)
}

// pathWith is the environment with dir first in PATH and the system bus at
// busAddress.
func pathWith(dir, busAddress string) []string {
	env := []string{"DBUS_SYSTEM_BUS_ADDRESS=" + busAddress, "HOME=" + dir, "TERM=dumb"}
	for _, e := range cleanEnv() {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			e = "PATH=" + dir + ":" + v
		}
		if !strings.HasPrefix(e, "HOME=") && !strings.HasPrefix(e, "TERM=") {
			env = append(env, e)
		}
	}
	return env
}

// TestCompletionFromDaemon: in each shell, list and find complete the
// labels and UUIDs a running diskd knows (list also its hosts), quoted for
// the shell, never a value that could mislead a terminal; with no daemon,
// or no bus, nothing and no message.
func TestCompletionFromDaemon(t *testing.T) {
	bus := dbustest.Session(t)
	startDaemon(t, bus.Address, network(t))
	bin := buildDiskctl(t)
	live := newCompleters(t, pathWith(filepath.Dir(bin), bus.Address))

	findAll := []string{"BACKUP-2019", "My Passport", "SYSTEM", "aaaa-1111", "alpha", "bbbb-2222", "beta", "cccc-3333", "dddd-4444"}
	for _, c := range live {
		quote := func(s []string) []string {
			if c.shell != "bash" {
				return s
			}
			var q []string
			for _, v := range s {
				q = append(q, strings.ReplaceAll(v, " ", `\ `))
			}
			return q
		}
		for _, tc := range []struct {
			line string
			want []string
		}{
			{"diskctl find ", findAll},
			{"diskctl find B", []string{"BACKUP-2019"}},
			{"diskctl find My", []string{"My Passport"}},
			{"diskctl --json find c", []string{"cccc-3333"}},
			{"diskctl list a", []string{"aaaa-1111", "alpha"}},
			{"diskctl list be", []string{"beta"}},
			{"diskctl find alpha", []string{"alpha"}}, // find matches host names, as list does
			{"diskctl info be", []string{"beta"}},
			{"diskctl li", []string{"list"}},
		} {
			t.Run(c.shell+"/"+tc.line, func(t *testing.T) {
				got := c.complete(t, tc.line)
				if c.shell == "fish" && strings.HasSuffix(tc.line, " ") {
					// fish also offers options after a command; only values count here.
					got = slices.DeleteFunc(got, func(s string) bool { return strings.HasPrefix(s, "-") })
				}
				if want := quote(tc.want); !slices.Equal(got, want) {
					t.Errorf("got %q, want %q", got, want)
				}
				for _, g := range got {
					if strings.ContainsAny(g, "\x1b\u202e<") || strings.Contains(g, "evil") {
						t.Errorf("offered the hostile label: %q", g)
					}
				}
			})
		}
	}

	// The bus named with --bus is the one asked, not the system bus.
	elsewhere := newCompleters(t, pathWith(filepath.Dir(bin), "unix:path=/nonexistent/bus"))
	for _, c := range elsewhere {
		if c.shell == "zsh" {
			continue // zsh's _arguments takes --bus's value with its own quoting; covered by bash and fish
		}
		if got := c.complete(t, "diskctl --bus "+bus.Address+" find B"); !slices.Equal(got, []string{"BACKUP-2019"}) {
			t.Errorf("%s: --bus %s find B: got %q", c.shell, bus.Address, got)
		}
	}

	// No daemon on the bus, and no bus at all: nothing, silently, at once.
	// "At once" is diskctl's part: it fails by itself, with its own exit
	// status, instead of waiting for the completion's timeout to kill it.
	// (The shells themselves are not timed: starting zsh's completion
	// system takes seconds on a loaded machine.)
	empty := dbustest.Session(t)
	for _, tc := range []struct{ address, says string }{
		{empty.Address, "diskd is not running"},
		{"unix:path=/nonexistent/bus", "cannot reach the system bus"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := exec.CommandContext(ctx, bin, "list", "--json")
		cmd.Env = pathWith(filepath.Dir(bin), tc.address)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		took := time.Since(start)
		cancel()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 3 || !strings.Contains(string(out), tc.says) {
			t.Errorf("diskctl list --json, bus %s without diskd: %v, %q; want exit status 3 saying %q", tc.address, err, out, tc.says)
		}
		if took > 5*time.Second {
			t.Errorf("diskctl list --json, bus %s without diskd: took %v, want well under the completions' 2 s timeout", tc.address, took)
		}
		for _, c := range newCompleters(t, pathWith(filepath.Dir(bin), tc.address)) {
			got := c.complete(t, "diskctl find ")
			got = slices.DeleteFunc(got, func(s string) bool { return strings.HasPrefix(s, "-") })
			if len(got) > 0 {
				t.Errorf("%s, bus %s without diskd: offered %q", c.shell, tc.address, got)
			}
		}
	}
}

// TestCompletionCommandsAndOptions: every shell offers exactly diskctl's
// commands and options.
func TestCompletionCommandsAndOptions(t *testing.T) {
	dir := t.TempDir()
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	withHelp := append(slices.Clone(names), "help")
	slices.Sort(names)
	slices.Sort(withHelp)
	for _, c := range newCompleters(t, pathWith(dir, "unix:path=/nonexistent/bus")) {
		for _, tc := range []struct {
			line string
			want []string
		}{
			{"diskctl ", withHelp},
			{"diskctl help ", names},
			{"diskctl --bus ", []string{"session", "system", "unix:path="}},
			{"diskctl --bus session ", withHelp},
			{"diskctl --", []string{"--bus", "--help", "--json", "--version"}},
			{"diskctl monitor --n", []string{"--notify"}},
			{"diskctl peers --n", nil},
		} {
			got := c.complete(t, tc.line)
			if !slices.Equal(got, tc.want) {
				t.Errorf("%s: %q: got %q, want %q", c.shell, tc.line, got, tc.want)
			}
		}
		// The short options, where the shell offers them for a lone dash.
		if got := c.complete(t, "diskctl -"); !slices.Contains(got, "-V") && c.shell != "bash" {
			t.Errorf("%s: diskctl -: no -V in %q", c.shell, got)
		}
	}
}

// TestHelpDefaultsAndManPage: diskctl's one default (the bus) is what its
// help says, and diskctl(1) documents every command and option.
func TestHelpDefaultsAndManPage(t *testing.T) {
	o, err := parseArgs(nil)
	if err != nil {
		t.Fatal(err)
	}
	var help strings.Builder
	writeHelp(&help)
	if !regexp.MustCompile(`--bus BUS +` + regexp.QuoteMeta(o.bus) + ` \(default`).MatchString(help.String()) {
		t.Errorf("help does not give the default bus %q:\n%s", o.bus, help.String())
	}
	for _, opt := range []string{"-h, --help", "-V, --version", "--json", "--notify"} {
		if !strings.Contains(help.String(), "  "+opt+" ") {
			t.Errorf("help lacks %q", opt)
		}
	}
	for _, args := range [][]string{{"-V"}, {"--version"}} {
		if o, err := parseArgs(args); err != nil || !o.version {
			t.Errorf("%q: %+v %v", args, o, err)
		}
	}
	b, err := os.ReadFile(dbustest.File(t, "packaging/man/diskctl.1"))
	if err != nil {
		t.Fatal(err)
	}
	man := string(b)
	for _, c := range commands() {
		if !regexp.MustCompile(`(?m)^\.B[IR]? ` + c.name + `\b`).MatchString(man) {
			t.Errorf("diskctl(1) does not document the command %s", c.name)
		}
	}
	for _, opt := range []string{`\-\-bus`, `\-\-json`, `\-\-notify`, `.BR \-h ", " \-\-help`, `.BR \-V ", " \-\-version`} {
		if !strings.Contains(man, opt) {
			t.Errorf("diskctl(1) does not document %s", opt)
		}
	}
	if !strings.Contains(man, `.TH DISKCTL 1 "@DATE@" "diskd @VERSION@"`) {
		t.Error("diskctl(1): .TH does not take the date and version make deb puts in")
	}
}
