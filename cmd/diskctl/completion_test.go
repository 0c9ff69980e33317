package main

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/diskd/diskd/dbusapi/dbustest"
	"github.com/diskd/diskd/service/present"
)

// TestBashCompletion keeps packaging/bash-completion/diskctl in step with
// the commands and options.
func TestBashCompletion(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Fatal("bash is needed to test the bash completion: ", err)
	}
	file := dbustest.File(t, "packaging/bash-completion/diskctl")
	complete := func(words ...string) []string {
		t.Helper()
		script := `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _diskctl; echo "${COMPREPLY[*]}"`
		out, err := exec.Command("bash", append([]string{"-c", script, "bash", file, "diskctl"}, words...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v: %s", err, out)
		}
		return strings.Fields(string(out))
	}
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	tests := []struct {
		words []string
		want  []string
	}{
		{[]string{""}, append(slices.Clone(names), "help")},
		{[]string{"--bus", "session", ""}, append(slices.Clone(names), "help")},
		{[]string{"help", ""}, names},
		{[]string{"--"}, []string{"--bus", "--json", "--help", "--version"}},
		{[]string{"monitor", "--n"}, []string{"--notify"}},
		{[]string{"--bus", ""}, []string{"system", "session", "unix:path="}},
		{[]string{"--bus", "=", "se"}, []string{"session"}},
		{[]string{"find", ""}, nil},
		{[]string{"list", "-o", "SE"}, []string{"SERIAL"}},
		{[]string{"list", "-o", "DEVICE,fsa"}, []string{"DEVICE,FSAVAIL"}},
		{[]string{"list", "-o", "+MOD"}, []string{"+MODEL"}},
		{[]string{"info", "--sort", "SI"}, []string{"SIZE"}},
		{[]string{"list", "--no"}, []string{"--noheadings"}},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.words, " "), func(t *testing.T) {
			if got := complete(tc.words...); !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestCompletionColumns: the completion files offer exactly the columns
// diskctl knows.
func TestCompletionColumns(t *testing.T) {
	want := strings.Join(present.AllColumns(), " ")
	for _, f := range []string{"../../packaging/bash-completion/diskctl", "../../packaging/zsh-completion/_diskctl",
		"../../packaging/fish-completion/diskctl.fish"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), want) {
			t.Errorf("%s does not list the columns %q", f, want)
		}
	}
}
