package main

import (
	"strings"
	"testing"
	"time"
)

func TestStateFlags(t *testing.T) {
	for _, c := range []struct {
		name    string
		args    []string
		env     map[string]string
		uid     int
		dir     string
		max     int
		maxAge  time.Duration
		returns time.Duration
	}{
		{name: "root default", args: []string{"-d"}, uid: 0, dir: "/var/lib/diskd",
			max: 100000, maxAge: 365 * 24 * time.Hour, returns: time.Minute},
		{name: "user with XDG_STATE_HOME", args: []string{"-d"}, uid: 1000, env: map[string]string{"XDG_STATE_HOME": "/x/state", "HOME": "/home/u"},
			dir: "/x/state/diskd", max: 100000, maxAge: 365 * 24 * time.Hour, returns: time.Minute},
		{name: "user without it", args: []string{"-d"}, uid: 1000, env: map[string]string{"HOME": "/home/u"},
			dir: "/home/u/.local/state/diskd", max: 100000, maxAge: 365 * 24 * time.Hour, returns: time.Minute},
		{name: "systemd's StateDirectory", args: []string{"-d"}, uid: 999,
			env: map[string]string{"STATE_DIRECTORY": "/var/lib/diskd:/var/lib/other", "HOME": "/nonexistent"},
			dir: "/var/lib/diskd", max: 100000, maxAge: 365 * 24 * time.Hour, returns: time.Minute},
		{name: "none", args: []string{"-d", "--state-dir", "none"}, uid: 0, dir: "",
			max: 100000, maxAge: 365 * 24 * time.Hour, returns: time.Minute},
		{name: "all given", args: []string{"-d", "--state-dir", "/srv/s", "--history-max", "50", "--history-max-age", "90d", "--return-after", "5s"},
			uid: 0, dir: "/srv/s", max: 50, maxAge: 90 * 24 * time.Hour, returns: 5 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			o, err := parseArgs(c.args, env(c.env), c.uid, none)
			if err != nil {
				t.Fatal(err)
			}
			if g := o.cfg; g.StateDir != c.dir || g.HistoryMax != c.max || g.HistoryMaxAge != c.maxAge || g.ReturnAfter != c.returns {
				t.Errorf("state dir %q, history max %d, max age %v, return after %v; want %q %d %v %v",
					g.StateDir, g.HistoryMax, g.HistoryMaxAge, g.ReturnAfter, c.dir, c.max, c.maxAge, c.returns)
			}
		})
	}
}

func TestStateFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-d", "--state-dir", ""}, "flag --state-dir: empty"},
		{[]string{"-d", "--history-max", "0"}, "flag --history-max: 0 is out of range"},
		{[]string{"-d", "--history-max", "x"}, `invalid value "x" for flag --history-max`},
		{[]string{"-d", "--history-max-age", "10m"}, "flag --history-max-age: 10m0s is out of range"},
		{[]string{"-d", "--history-max-age", "soon"}, `invalid value "soon" for flag --history-max-age`},
		{[]string{"-d", "--return-after", "2d"}, "flag --return-after: 48h0m0s is out of range"},
		{[]string{"--state-dir", "/x"}, "flag --state-dir needs -d"},
	} {
		_, err := parseArgs(c.args, env(nil), 0, none)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %v, want one line containing %q", c.args, err, c.want)
		}
	}
}
