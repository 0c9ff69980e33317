package eventlog

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/diskd/diskd/service/diskstate"
	"github.com/diskd/diskd/service/inventory"
	"github.com/diskd/diskd/service/testbed/testclock"
)

func newWriter() (*Writer, *bytes.Buffer, *testclock.Clock) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	c := testclock.New(time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC))
	return NewWriter(log, c.Now), &buf, c
}

func lines(buf *bytes.Buffer) []string {
	s := strings.TrimSpace(buf.String())
	buf.Reset()
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// peerEvents returns the events of inventory's Apply for a peer that
// joins with n disks (joined), or that is lost with them.
func peerEvents(host string, n int, kind inventory.EventKind) []inventory.Event {
	p := diskstate.Peer{HostID: host + "-id", Hostname: host, Address: "10.0.0.2"}
	var out []inventory.Event
	diskKind := inventory.DiskAppeared
	if kind == inventory.PeerLost {
		diskKind = inventory.DiskDisappeared
	} else {
		out = append(out, inventory.Event{Kind: kind, Peer: p})
	}
	for i := range n {
		out = append(out, inventory.Event{Kind: diskKind, Peer: p,
			Disk: diskstate.Disk{HostID: p.HostID, Hostname: host, Device: fmt.Sprintf("/dev/sd%d", i), Label: fmt.Sprintf("L%d", i)}})
	}
	if kind == inventory.PeerLost {
		out = append(out, inventory.Event{Kind: kind, Peer: p, Reason: inventory.ReasonTimeout})
	}
	return out
}

func TestWriterSummarises(t *testing.T) {
	ctx := context.Background()
	p := diskstate.Peer{HostID: "beta-id", Hostname: "beta"}
	disk := func(kind inventory.EventKind, i int) inventory.Event {
		return inventory.Event{Kind: kind, Peer: p, Disk: diskstate.Disk{HostID: "beta-id", Hostname: "beta", Device: fmt.Sprintf("/dev/x%d", i)}}
	}
	var changes []inventory.Event
	for i := range 3 {
		changes = append(changes, disk(inventory.DiskAppeared, i))
	}
	changes = append(changes, disk(inventory.DiskDisappeared, 9))
	var big []inventory.Event
	for i := range 20 {
		big = append(big, disk(inventory.DiskChanged, i))
	}
	lost := peerEvents("beta", 16, inventory.PeerLost)
	cases := []struct {
		name   string
		events []inventory.Event
		want   []string // substrings, one per line
	}{
		{"joined", peerEvents("beta", 16, inventory.PeerJoined), []string{`msg="peer beta joined with 16 disks"`}},
		{"lost", lost, []string{`msg="peer beta lost (timeout) with 16 disks"`}},
		{"small change names each disk", changes, []string{`msg="peer beta: 3 disks appeared, 1 disappeared"`,
			`msg="disk appeared" host=beta device=/dev/x0`, "device=/dev/x1", "device=/dev/x2", `msg="disk disappeared" host=beta device=/dev/x9`}},
		{"large change is one line", big, []string{`msg="peer beta: 20 disks changed"`}},
		{"a change says what changed", []inventory.Event{{Kind: inventory.DiskChanged, Peer: p, Changed: []string{"label", "mountpoints"},
			Disk: diskstate.Disk{HostID: "beta-id", Hostname: "beta", Device: "/dev/x1"}}},
			[]string{`msg="peer beta: 1 disk changed"`, `msg="disk changed" host=beta device=/dev/x1 changed=label,mountpoints`}},
		{"lost and back", append(lost, peerEvents("beta", 2, inventory.PeerJoined)...), []string{`msg="peer beta lost (timeout) and back with 2 disks"`}},
		{"local disks one line each", []inventory.Event{{Kind: inventory.DiskAppeared, Disk: diskstate.Disk{Device: "/dev/loop1", Local: true, Hostname: "me"}}},
			[]string{`msg="disk appeared" host=me device=/dev/loop1`}},
		{"escaped", peerEvents("b\x1b[2Jeta", 1, inventory.PeerJoined), []string{`peer b\\x1b[2Jeta joined with 1 disk`, `disk appeared`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w, buf, _ := newWriter()
			for _, e := range c.events {
				w.Add(ctx, e)
			}
			w.Flush(ctx)
			got := lines(buf)
			if len(got) != len(c.want) {
				t.Fatalf("%d lines, want %d:\n%s", len(got), len(c.want), strings.Join(got, "\n"))
			}
			for i, want := range c.want {
				if !strings.Contains(got[i], want) {
					t.Errorf("line %d: %s\nwant it to contain %s", i, got[i], want)
				}
			}
		})
	}
}

// TestWriterCannotBeFlooded: 300 fake peers of 34 disks each that join
// and go, again and again for 10 minutes, write a few lines a minute, and
// the lines that are written tell how many were left out.
func TestWriterCannotBeFlooded(t *testing.T) {
	ctx := context.Background()
	w, buf, clk := newWriter()
	total := 0
	for minute := range 10 {
		for p := range 300 {
			host := fmt.Sprintf("fake%03d", p)
			for _, e := range peerEvents(host, 34, inventory.PeerJoined) {
				w.Add(ctx, e)
			}
			w.Flush(ctx)
			for _, e := range peerEvents(host, 34, inventory.PeerLost) {
				w.Add(ctx, e)
			}
			w.Flush(ctx)
			clk.Add(time.Minute / 300)
		}
		got := lines(buf)
		total += len(got)
		// Two kinds of line (joined, lost), each LinesPerMinute a minute,
		// and a burst of as many in the first minute.
		limit := 2*LinesPerMinute + 2
		if minute == 0 {
			limit += 2 * LinesPerMinute
		}
		if len(got) > limit {
			t.Fatalf("minute %d: %d lines, want at most %d", minute, len(got), limit)
		}
		if minute > 0 && !strings.Contains(strings.Join(got, "\n"), "suppressed=") {
			t.Errorf("minute %d: no line tells how many were left out:\n%s", minute, strings.Join(got, "\n"))
		}
	}
	t.Logf("600 peer changes (20,400 disk events) a minute for 10 minutes: %d lines", total)
}

// TestWriterLimitRefills: after a quiet minute, peer lines are written again.
func TestWriterLimitRefills(t *testing.T) {
	ctx := context.Background()
	w, buf, clk := newWriter()
	for i := range 2 * LinesPerMinute {
		for _, e := range peerEvents(fmt.Sprintf("p%d", i), 20, inventory.PeerJoined) {
			w.Add(ctx, e)
		}
		w.Flush(ctx)
	}
	if n := len(lines(buf)); n != LinesPerMinute {
		t.Fatalf("%d lines of a burst, want %d", n, LinesPerMinute)
	}
	clk.Add(time.Minute)
	for _, e := range peerEvents("late", 20, inventory.PeerJoined) {
		w.Add(ctx, e)
	}
	w.Flush(ctx)
	got := lines(buf)
	if len(got) != 1 || !strings.Contains(got[0], "peer late joined") || !strings.Contains(got[0], fmt.Sprintf("suppressed=%d", LinesPerMinute)) {
		t.Fatalf("after a minute: %q", got)
	}
}
