package diskstate

import (
	"slices"
	"strings"
	"testing"
)

// TestSearchedNames keeps the help text true to the table: it names every
// field marked Search (its key, with a space for "_") and no other.
func TestSearchedNames(t *testing.T) {
	var want []string
	for _, f := range Fields() {
		if f.Search {
			want = append(want, strings.ReplaceAll(f.Key, "_", " "))
		}
	}
	got := strings.FieldsFunc(strings.ReplaceAll(SearchedNames, " or ", ","), func(r rune) bool { return r == ',' })
	for i := range got {
		got[i] = strings.TrimSpace(got[i])
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("SearchedNames names %q; the fields marked Search are %q", got, want)
	}
}
