package main

import (
	"bytes"
	"context"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/diskd/diskd/service/control"
	"github.com/diskd/diskd/service/control/controltest"
)

// TestRunCommand: diskd COMMAND sends that one request and exits with its
// status, printing the answer as the client does.
func TestRunCommand(t *testing.T) {
	ts := controltest.Start(t, &control.Server{})
	for _, tc := range []struct {
		line   string
		status int
		out    string // substring of stdout
		errOut string // substring of stderr
	}{
		{"list", 0, "/dev/sdd1", ""},
		{"list --json --host beta", 0, `"hostname":"beta"`, ""},
		{"find media", 0, "beta  /dev/sdd1", ""},
		{"find zzz", 1, "", `no disk matches "zzz"`},
		{"status", 0, "version: 1.2.3", ""},
		{"bogus", 1, "", `error: unknown command "bogus"`},
		{"list -o DEVICE -n --sort DEVICE", 0, "/dev/sda1\n", ""},
		{"quit", 0, "", ""},
	} {
		t.Run(tc.line, func(t *testing.T) {
			var out, errOut bytes.Buffer
			status := RunCommand(context.Background(), ts.Path, tc.line, &out, &errOut)
			if status != tc.status || !strings.Contains(out.String(), tc.out) || !strings.Contains(errOut.String(), tc.errOut) {
				t.Errorf("status %d, stdout %q, stderr %q; want %d, %q, %q", status, out.String(), errOut.String(),
					tc.status, tc.out, tc.errOut)
			}
			if strings.Contains(out.String(), "### ") {
				t.Errorf("one request got a header: %q", out.String())
			}
		})
	}
	var errOut bytes.Buffer
	if status := RunCommand(context.Background(), ts.Path+".none", "list", io.Discard, &errOut); status != 1 ||
		!strings.Contains(errOut.String(), "cannot connect") {
		t.Errorf("no daemon: status %d, %q", status, errOut.String())
	}
}

// TestRunClientPipeHeaders: with several requests on standard input each
// answer is introduced by "### REQUEST: N lines", followed by exactly N
// lines, so that a script can split the answers even when a disk string
// looks like a header; with one request there is no header.
func TestRunClientPipeHeaders(t *testing.T) {
	ts := controltest.Start(t, &control.Server{})
	var out, errOut bytes.Buffer
	in := "status\nlist -o DEVICE\nfind zzz\nlist --json beta\n"
	if status := RunClient(context.Background(), ts.Path, strings.NewReader(in), &out, &errOut); status != 1 {
		t.Errorf("status %d, want 1 (find found nothing)", status)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	var requests []string
	for i := 0; i < len(lines); {
		req, count, ok := strings.Cut(strings.TrimPrefix(lines[i], "### "), ": ")
		if !strings.HasPrefix(lines[i], "### ") || !ok {
			t.Fatalf("line %d %q is no header:\n%s", i, lines[i], out.String())
		}
		n, err := strconv.Atoi(strings.Fields(count)[0])
		if err != nil {
			t.Fatalf("header %q: %v", lines[i], err)
		}
		requests = append(requests, req)
		i += 1 + n
	}
	if got := strings.Join(requests, "|"); got != "status|list -o DEVICE|find zzz|list --json beta" {
		t.Errorf("answers to %q:\n%s", got, out.String())
	}
	out.Reset()
	if RunClient(context.Background(), ts.Path, strings.NewReader("status\n"), &out, &errOut); strings.Contains(out.String(), "###") {
		t.Errorf("one request got a header:\n%s", out.String())
	}
}
