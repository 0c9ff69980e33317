package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode/utf8"
)

// Values of the MET column.
const (
	metYes     = "yes"
	metNo      = "NO"
	metNone    = "—" // no target
	metPending = "pending"
)

// row is one line of the table.
type row struct {
	metric string
	value  string
	poll   string // the same measured with --no-uevents; "" when not measured
	ratio  string // poll / value
	target string
	met    string
}

// section is a numbered part of the table (the items).
type section struct {
	title string
	rows  []row
}

// report collects the table as the phases finish; safe for concurrent use.
type report struct {
	mu       sync.Mutex
	head     []string
	sections map[int]*section
	notes    []string
	// noPoll leaves out the --no-uevents and ratio columns.
	noPoll bool
}

func newReport() *report { return &report{sections: map[int]*section{}} }

func (r *report) headf(format string, a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.head = append(r.head, fmt.Sprintf(format, a...))
}

// section names part n of the table.
func (r *report) section(n int, title string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sectionLocked(n).title = title
}

func (r *report) sectionLocked(n int) *section {
	s := r.sections[n]
	if s == nil {
		s = &section{}
		r.sections[n] = s
	}
	return s
}

func (r *report) add(n int, rows ...row) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.sectionLocked(n)
	s.rows = append(s.rows, rows...)
}

// note adds a footnote and returns its mark, such as "(c)".
func (r *report) note(format string, a ...any) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, fmt.Sprintf(format, a...))
	return fmt.Sprintf("(%c)", 'a'+len(r.notes)-1)
}

// write prints the table: the head, a header line, each section's title
// and rows with the columns aligned across the whole table, then the notes.
func (r *report) write(w io.Writer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, h := range r.head {
		fmt.Fprintln(w, h)
	}
	fmt.Fprintln(w)
	header := row{"METRIC", "VALUE", "--no-uevents", "RATIO", "TARGET", "MET"}
	all := []row{header}
	var order []int
	for n := range 10 {
		if s, ok := r.sections[n]; ok && (len(s.rows) > 0 || s.title != "") {
			order = append(order, n)
			all = append(all, s.rows...)
		}
	}
	var width [6]int
	for _, rw := range all {
		for i, c := range rw.cells() {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	line := func(rw row) {
		var b strings.Builder
		for i, c := range rw.cells() {
			if r.noPoll && (i == 2 || i == 3) {
				continue
			}
			b.WriteString(c)
			if i < 5 {
				b.WriteString(strings.Repeat(" ", width[i]-utf8.RuneCountInString(c)+2))
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	line(header)
	for _, n := range order {
		s := r.sections[n]
		fmt.Fprintf(w, "%d. %s\n", n, s.title)
		for _, rw := range s.rows {
			line(rw)
		}
	}
	if len(r.notes) > 0 {
		fmt.Fprintln(w)
		for i, n := range r.notes {
			fmt.Fprintln(w, wrap(fmt.Sprintf("(%c) %s", 'a'+i, n), 100, "    "))
		}
	}
}

func (rw row) cells() [6]string {
	c := [6]string{"  " + rw.metric, rw.value, rw.poll, rw.ratio, rw.target, rw.met}
	for i := 2; i < 6; i++ {
		if c[i] == "" {
			c[i] = "—"
		}
	}
	return c
}

// wrap breaks s into lines of at most width runes at spaces, indenting
// the continuation lines.
func wrap(s string, width int, indent string) string {
	var b strings.Builder
	col := 0
	for i, word := range strings.Fields(s) {
		n := utf8.RuneCountInString(word)
		if i > 0 {
			if col+1+n > width {
				b.WriteString("\n" + indent)
				col = utf8.RuneCountInString(indent)
			} else {
				b.WriteByte(' ')
				col++
			}
		}
		b.WriteString(word)
		col += n
	}
	return b.String()
}

// notMeasured is the one row of a case that could not measure.
func notMeasured(what string) row {
	return row{metric: what, value: "not measured (see the error above)", met: metNo}
}

// metLE judges value ≤ target.
func metLE[T ~int | ~int64 | ~float64 | ~uint64](value, target T) string {
	if value <= target {
		return metYes
	}
	return metNo
}
