package scan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/diskd/diskd/service/diskstate"
)

// DefaultTimeout is how long a blkid run may take when Prober.Timeout is 0.
const DefaultTimeout = 10 * time.Second

// waitDelay bounds how long Probe waits for blkid's output pipes to close
// once blkid has exited or been killed (a grandchild may hold them open).
const waitDelay = 500 * time.Millisecond

// Prober runs blkid and reads the mount table. The zero value is ready to
// use, and a Prober may be used by several goroutines at once. Its only
// state is the filesystem versions of the disks its last Probe found, so
// that a rescan of unchanged disks runs blkid once (see setVersions); use
// one Prober for the life of a scanner.
type Prober struct {
	Path    string        // program to run, default "blkid" (looked up in PATH)
	Timeout time.Duration // default 10s; a probe running longer is killed with its whole process group
	Globs   []string      // device path globs (filepath.Match syntax); empty = all block devices (let blkid enumerate)
	Root    string        // where sysfs and the udev database are read (see [Attrs]); "" means "/"

	mu       sync.Mutex
	versions map[fsKey]string // of the last Probe's disks
}

// fsKey is a filesystem as far as its version goes: a new filesystem on
// the device (mkfs) has a new UUID.
type fsKey struct{ device, uuid, typ string }

func fsKeyOf(d *diskstate.Disk) fsKey { return fsKey{d.Device, d.UUID, d.Type} }

// Probe returns the disks of this host, sorted by device, with their mount
// points.
//
// Without Globs, blkid enumerates every block device itself. With Globs,
// each glob is expanded with filepath.Glob, symlinks are resolved (so
// /dev/disk/by-label/X gives its /dev/sdXN), only block devices are kept, and
// those are passed to blkid; when nothing matches, Probe returns no disks
// without running blkid.
//
// Errors are one line a person can act on and start with "blkid:" or
// "mount table:": a missing program, a timeout, a non-zero exit with the
// first line blkid wrote to standard error. Exit status 2 with no output
// means that nothing was found: no disks, no error.
func (p *Prober) Probe(ctx context.Context) ([]diskstate.Disk, error) {
	devs, err := p.devices()
	if err != nil {
		return nil, err
	}
	if len(p.Globs) > 0 && len(devs) == 0 {
		return nil, nil
	}
	return p.probe(ctx, devs)
}

// probe runs blkid on devs (all devices when devs is empty), resolves
// ambiguous values and attaches mount points.
func (p *Prober) probe(ctx context.Context, devs []string) ([]diskstate.Disk, error) {
	out, err := p.run(ctx, blkidArgs("export", devs))
	if err != nil {
		return nil, err
	}
	recs, err := parseExport(out)
	if err != nil {
		return nil, fmt.Errorf("blkid: %w", err)
	}
	for _, r := range recs {
		if !r.needsResolve() {
			continue
		}
		// A label with '^' or "M-" (or any non-ASCII byte): ask blkid
		// about this device alone in the lossless udev encoding.
		uout, err := p.run(ctx, blkidArgs("udev", []string{r.disk.Device}))
		if err != nil {
			return nil, err
		}
		r.resolve(parseUdev(uout))
	}
	disks := finish(recs)
	if err := attachMounts(disks); err != nil {
		return nil, err
	}
	p.setVersions(ctx, disks)
	a := Attrs{Root: p.Root}
	for i := range disks {
		a.Fill(&disks[i])
		a.fillFS(&disks[i])
	}
	return disks, nil
}

// setVersions sets the filesystem version of disks. blkid reports VERSION
// only in low-level probing mode (-p), which needs the devices named, so
// this is a second run, over the disks found:
//
//	blkid -p -o export -s VERSION -- DEVICE...
//
// A filesystem's version does not change while its device, UUID and type
// stay the same, so the run asks only about disks the last Probe did not
// find: a rescan that finds the same filesystems runs blkid once. A
// failure of this run costs only the versions of the disks it asked about
// (they stay empty, and are asked about again next time), never the scan:
// -p exits non-zero for a device it finds ambiguous, for example.
func (p *Prober) setVersions(ctx context.Context, disks []diskstate.Disk) {
	p.mu.Lock()
	known := p.versions
	p.mu.Unlock()
	found := make(map[fsKey]string, len(disks))
	args := []string{"-p", "-o", "export", "-s", "VERSION", "--"}
	var ask []int // the disks to ask about
	for i := range disks {
		d := &disks[i]
		if v, ok := known[fsKeyOf(d)]; ok {
			d.FSVersion, found[fsKeyOf(d)] = v, v
		} else {
			ask = append(ask, i)
			args = append(args, d.Device)
		}
	}
	if len(ask) > 0 {
		if byDev, ok := p.runVersions(ctx, args); ok {
			for _, i := range ask {
				d := &disks[i]
				d.FSVersion, found[fsKeyOf(d)] = byDev[d.Device], byDev[d.Device]
			}
		}
	}
	p.mu.Lock()
	p.versions = found
	p.mu.Unlock()
}

// runVersions runs blkid -p with args and returns the version of each
// device it reported; false when the run or its output failed.
func (p *Prober) runVersions(ctx context.Context, args []string) (map[string]string, bool) {
	out, err := p.run(ctx, args)
	if err != nil {
		return nil, false
	}
	recs, err := parseExport(out)
	if err != nil {
		return nil, false
	}
	byDev := make(map[string]string, len(recs))
	for _, r := range recs {
		byDev[r.disk.Device] = clean(r.disk.FSVersion, diskstate.MaxVersionLen)
	}
	return byDev, true
}

// blkidArgs returns the arguments of a blkid run in the given output format
// ("export" or "udev").
func blkidArgs(format string, devs []string) []string {
	args := []string{"-c", "/dev/null", "-o", format}
	for t := range numTags {
		args = append(args, "-s", t.name())
	}
	if len(devs) > 0 {
		args = append(args, "--")
		args = append(args, devs...)
	}
	return args
}

// devices expands p.Globs into a sorted list of block device paths.
func (p *Prober) devices() ([]string, error) {
	seen := make(map[string]bool)
	var devs []string
	for _, g := range p.Globs {
		matches, err := filepath.Glob(g)
		if err != nil {
			return nil, fmt.Errorf("blkid: bad device glob %q: %w", g, err)
		}
		for _, m := range matches {
			real, err := filepath.EvalSymlinks(m)
			if err != nil {
				continue // vanished, or a dangling link
			}
			fi, err := os.Stat(real)
			if err != nil || fi.Mode()&fs.ModeDevice == 0 || fi.Mode()&fs.ModeCharDevice != 0 {
				continue
			}
			if !seen[real] {
				seen[real] = true
				devs = append(devs, real)
			}
		}
	}
	sort.Strings(devs)
	return devs, nil
}

// Matches reports whether device (a path such as /dev/sdb1) matches one of
// globs in filepath.Match syntax; with no globs everything matches. A
// malformed glob matches nothing. It does no I/O, so it does not follow
// symlinks: a glob such as /dev/disk/by-label/* never matches a kernel
// device name, and a caller filtering uevents with such globs should rescan
// on every block event.
func Matches(globs []string, device string) bool {
	if len(globs) == 0 {
		return true
	}
	for _, g := range globs {
		if ok, err := filepath.Match(g, device); err == nil && ok {
			return true
		}
	}
	return false
}

// runError is an error with a one-line message of its own that still
// unwraps to its cause.
type runError struct {
	msg string
	err error
}

func (e *runError) Error() string { return e.msg }
func (e *runError) Unwrap() error { return e.err }

// run runs the blkid program with args and returns its standard output.
func (p *Prober) run(ctx context.Context, args []string) ([]byte, error) {
	path := p.Path
	if path == "" {
		path = "blkid"
	}
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if err := ctx.Err(); err != nil {
		return nil, &runError{"blkid: not run: " + err.Error(), err}
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	cmd := exec.CommandContext(rctx, path, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// The child leads its own process group: kill all of it.
		err := unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
		if err != nil && !errors.Is(err, unix.ESRCH) {
			return err
		}
		return nil
	}
	cmd.WaitDelay = waitDelay
	cmd.Env = cEnv()
	var stdout, stderr capped
	stdout.max, stderr.max = maxOutput, maxStderr
	cmd.Stdout, cmd.Stderr = &stdout, &stderr

	err := cmd.Run()
	switch {
	case ctx.Err() != nil:
		return nil, &runError{"blkid: cancelled: " + ctx.Err().Error(), ctx.Err()}
	case rctx.Err() != nil:
		return nil, &runError{fmt.Sprintf("blkid: timed out after %v; killed it and its process group", timeout), rctx.Err()}
	case err == nil:
	case errors.Is(err, exec.ErrNotFound), errors.Is(err, fs.ErrNotExist):
		return nil, &runError{fmt.Sprintf("blkid: program %q not found", path), err}
	case errors.Is(err, fs.ErrPermission):
		return nil, &runError{fmt.Sprintf("blkid: program %q cannot be run: permission denied", path), err}
	case errors.Is(err, exec.ErrWaitDelay):
		return nil, &runError{fmt.Sprintf("blkid: %q exited but a child kept its output open; answer ignored", path), err}
	default:
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return nil, &runError{fmt.Sprintf("blkid: cannot run %q: %v", path, err), err}
		}
		if ee.ExitCode() == 2 {
			// BLKID_EXIT_NOTFOUND: nothing (else) found.
			break
		}
		msg := firstLine(stderr.buf.Bytes())
		if msg == "" {
			msg = "no message on standard error"
		}
		return nil, &runError{fmt.Sprintf("blkid: %v: %s", ee.ProcessState, msg), err}
	}
	if stdout.over {
		return nil, fmt.Errorf("blkid: output larger than %d MiB, ignored", maxOutput>>20)
	}
	return stdout.buf.Bytes(), nil
}

// cEnv is the environment of this process with the locale forced to C, so
// that blkid's output and messages do not depend on it.
func cEnv() []string {
	env := os.Environ()
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") || strings.HasPrefix(kv, "LANGUAGE=") {
			continue
		}
		out = append(out, kv)
	}
	return append(out, "LC_ALL=C")
}

// firstLine returns the first non-empty line of b, cleaned and bounded.
func firstLine(b []byte) string {
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		s := strings.TrimSpace(string(line))
		if s != "" {
			s = strings.Map(func(r rune) rune {
				if r < 0x20 || r == 0x7f {
					return ' '
				}
				return r
			}, s)
			return clean(s, 200)
		}
	}
	return ""
}

// capped is an io.Writer that keeps the first max bytes written to it and
// discards the rest (so that the writer never blocks the child), noting
// that it did.
type capped struct {
	buf  bytes.Buffer
	max  int
	over bool
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); len(p) > room {
		c.over = true
		c.buf.Write(p[:max(room, 0)])
	} else {
		c.buf.Write(p)
	}
	return len(p), nil
}
