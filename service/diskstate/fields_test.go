package diskstate

import "testing"

func TestFillChanged(t *testing.T) {
	const gib = 1 << 30
	for _, c := range []struct {
		name         string
		size, a1, a2 uint64
		want         bool
	}{
		{"small fs below 1%", 20 << 20, 10 << 20, 10<<20 + 100<<10, false},
		{"small fs at 1%", 20 << 20, 10 << 20, 10<<20 + (20<<20)/100, true},
		{"big fs below 1 GiB", 4 << 40, 2 << 40, 2<<40 - gib + 1, false},
		{"big fs at 1 GiB", 4 << 40, 2 << 40, 2<<40 - gib, true},
		{"equal", 1000, 5, 5, false},
	} {
		a := Disk{FSSize: c.size, FSAvail: c.a1, FSUsed: c.size - c.a1}
		b := Disk{FSSize: c.size, FSAvail: c.a2, FSUsed: c.size - c.a2}
		if got := FillChanged(&a, &b); got != c.want {
			t.Errorf("%s: FillChanged = %v, want %v", c.name, got, c.want)
		}
		b.KeepFill(&a)
		if kept := b.FSAvail == a.FSAvail; kept == c.want && c.a1 != c.a2 {
			t.Errorf("%s: KeepFill kept=%v", c.name, kept)
		}
	}
	if !FillChanged(&Disk{}, &Disk{FSSize: 1}) {
		t.Error("mounting (fs_size appears) is not a change")
	}
}
