package main

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/diskd/diskd/service/daemon"
	"github.com/diskd/diskd/service/logging"
	"github.com/diskd/diskd/service/testbed"
)

// completeDiskd returns what shell offers after line (words separated by
// one space; a trailing space starts an empty word), running the packaged
// completion file for diskd in that shell.
func completeDiskd(t *testing.T, shell, line, zdump string) []string {
	t.Helper()
	testbed.RequireTools(t, shell)
	pkg, err := filepath.Abs("../../packaging")
	if err != nil {
		t.Fatal(err)
	}
	var cmd *exec.Cmd
	switch shell {
	case "bash":
		script := `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _diskd; printf '%s\n' "${COMPREPLY[@]}"`
		cmd = exec.Command("bash", append([]string{"--norc", "-c", script, "bash", pkg + "/bash-completion/diskd"},
			strings.Split(line, " ")...)...)
	case "zsh":
		cmd = exec.Command("zsh", "-f", pkg+"/completion-test/zsh-complete.zsh", pkg+"/zsh-completion", line)
		cmd.Env = append(os.Environ(), "ZSH_COMPDUMP="+zdump)
	case "fish":
		cmd = exec.Command("fish", "--no-config", "-c", `source $argv[1]; complete -C $argv[2]`,
			pkg+"/fish-completion/diskd.fish", line)
	}
	return testbed.Completions(t, shell, line, cmd)
}

// TestCompletionFollowsFlags: bash, zsh and fish offer exactly diskd's
// flags (long and short, as --help spells them) and the values of the
// flags that have a fixed set.
func TestCompletionFollowsFlags(t *testing.T) {
	var long, short []string
	o := defaults()
	var a, b listFlag
	var g groupFlag
	var l string
	newFlagSet(&o, &a, &b, &g, &l).VisitAll(func(f *flag.Flag) {
		if len(f.Name) == 1 {
			short = append(short, "-"+f.Name)
		} else {
			long = append(long, "--"+f.Name)
		}
	})
	long = append(long, "--help")
	short = append(short, "-h")
	all := append(slices.Clone(long), short...)
	slices.Sort(long)
	slices.Sort(all)
	levels := slices.Sorted(slices.Values(logging.Levels))
	zdump := filepath.Join(t.TempDir(), "zcompdump")
	for _, shell := range []string{"bash", "zsh", "fish"} {
		for _, c := range []struct {
			line string
			want []string
		}{
			{"diskd --", long},
			{"diskd -", all},
			{"diskd --log-level ", levels},
			{"diskd -d --log-level w", []string{"warning"}},
			{"diskd --bus ", []string{"none", "session", "system", "unix:path="}},
			{"diskd --interface l", []string{"lo"}},
			{"diskd --group ", []string{daemon.DefaultGroup.String(), daemon.DefaultGroup6.String()}},
			{"diskd --no-ue", []string{"--no-uevents"}},
		} {
			if got := completeDiskd(t, shell, c.line, zdump); !slices.Equal(got, c.want) {
				t.Errorf("%s: %q: got %q, want %q", shell, c.line, got, c.want)
			}
		}
	}
}
