package wire

import (
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestKeyRotation(t *testing.T) {
	oldKey, newKey := testKey(10), testKey(20)
	oldNew := mustKeyring(t, oldKey, newKey)
	newOld := mustKeyring(t, newKey, oldKey)
	onlyNew := mustKeyring(t, newKey)
	onlyOld := mustKeyring(t, oldKey)
	m := otherMsg(KindPing)
	seal := func(k *Keyring) []byte {
		d, err := Encode(m, 0, k)
		if err != nil {
			t.Fatal(err)
		}
		return d[0]
	}
	cases := []struct {
		name       string
		seal, open *Keyring
		ok         bool
	}{
		{"[old,new] opens [new,old]", newOld, oldNew, true},
		{"[new,old] opens [old,new]", oldNew, newOld, true},
		{"[old,new] opens [old]", onlyOld, oldNew, true},
		{"[new] opens [new,old]", newOld, onlyNew, true},
		{"[new] cannot open [old]", onlyOld, onlyNew, false},
		{"[new] cannot open [old,new]", oldNew, onlyNew, false},
		{"[old] cannot open [new]", onlyNew, onlyOld, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Decode(seal(c.seal), c.open)
			if c.ok && (err != nil || got.HostID != m.HostID) {
				t.Fatalf("err = %v", err)
			}
			if !c.ok && ReasonOf(err) != ReasonAuth {
				t.Fatalf("err = %v, want auth", err)
			}
		})
	}
}

func TestNewKeyring(t *testing.T) {
	if _, err := NewKeyring(); err == nil {
		t.Error("no keys: no error")
	}
	if _, err := NewKeyring(testKey(1), make([]byte, 16)); err == nil || !strings.Contains(err.Error(), "key 1") {
		t.Errorf("16-byte key: %v", err)
	}
	k := mustKeyring(t, testKey(1), testKey(2))
	if k.Len() != 2 {
		t.Errorf("Len %d", k.Len())
	}
}

func writeKeyFile(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // umask
		t.Fatal(err)
	}
	return path
}

func TestLoadKeyring(t *testing.T) {
	k1 := base64.StdEncoding.EncodeToString(testKey(1))
	k2 := base64.StdEncoding.EncodeToString(testKey(2))
	path := writeKeyFile(t, "# diskd keys\n\n  "+k2+"  \n# old key, remove after rollout\n"+k1+"\n\n", 0o600)
	ring, err := LoadKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	if ring.Len() != 2 {
		t.Fatalf("%d keys", ring.Len())
	}
	// The first key in the file seals.
	d, _ := Encode(otherMsg(KindBye), 0, ring)
	if _, err := Decode(d[0], mustKeyring(t, testKey(2))); err != nil {
		t.Errorf("first key does not seal: %v", err)
	}
	if _, err := Decode(d[0], mustKeyring(t, testKey(1))); err == nil {
		t.Error("second key seals")
	}
	// CRLF line endings and a 0400 file are fine.
	if _, err := LoadKeyring(writeKeyFile(t, k1+"\r\n", 0o400)); err != nil {
		t.Errorf("CRLF, 0400: %v", err)
	}
}

func TestLoadKeyringErrors(t *testing.T) {
	secret := "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlYw" // 31 bytes, unpadded
	good := base64.StdEncoding.EncodeToString(testKey(1))
	short := base64.StdEncoding.EncodeToString([]byte("short-secret-key"))
	long := base64.StdEncoding.EncodeToString(append(testKey(1), 'x'))
	cases := []struct {
		name    string
		content string
		mode    os.FileMode
		want    []string // substrings of the error
		hidden  string   // must not appear in the error
	}{
		{"mode 0644", good + "\n", 0o644, []string{"mode 0644 lets group or others read it; run chmod 600 "}, good},
		{"mode 0640", good + "\n", 0o640, []string{"mode 0640 lets group or others read it"}, good},
		{"mode 0620", good + "\n", 0o620, []string{"mode 0620 lets group or others write it"}, good},
		{"mode 0666", good + "\n", 0o666, []string{"mode 0666 lets group or others read or write it"}, good},
		{"mode 0601", good + "\n", 0o601, []string{"mode 0601"}, good},
		{"bad base64", "# c\n" + good + "\n" + "not*base64!" + secret + "\n", 0o600, []string{"line 3: not standard base64"}, secret},
		{"unpadded", secret + "\n", 0o600, []string{"line 1: not standard base64"}, secret},
		{"url base64", strings.NewReplacer("+", "-", "/", "_").Replace(base64.StdEncoding.EncodeToString(append(testKey(200), 0xfb, 0xff)[2:])) + "\n", 0o600, []string{"line 1: not standard base64"}, ""},
		{"short key", "\n" + short + "\n", 0o600, []string{"line 2: key is 16 bytes, want 32"}, short},
		{"long key", long + "\n", 0o600, []string{"line 1: key is 33 bytes, want 32"}, long},
		{"two keys on a line", good + " " + good + "\n", 0o600, []string{"line 1: not standard base64"}, good},
		{"empty file", "", 0o600, []string{"no keys"}, ""},
		{"only comments", "# nothing\n\n   \n#" + good + "\n", 0o600, []string{"no keys"}, good},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeKeyFile(t, c.content, c.mode)
			_, err := LoadKeyring(path)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.Contains(msg, path) {
				t.Errorf("error does not name the file: %v", msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
			if c.hidden != "" && strings.Contains(msg, c.hidden) {
				t.Errorf("error shows key material: %q", msg)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("multi-line error: %q", msg)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nope")
		_, err := LoadKeyring(path)
		if err == nil || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("fifo", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "fifo")
		if err := syscall.Mkfifo(path, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadKeyring(path); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("directory", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadKeyring(dir); err == nil {
			t.Error("no error")
		}
	})
}
