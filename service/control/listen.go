package control

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"golang.org/x/sys/unix"

	"github.com/diskd/diskd/service/defaults"
)

// maxSocketPath is the longest path a Unix socket address holds
// (sizeof sun_path minus the terminating NUL).
const maxSocketPath = 107

// Listen returns the control socket's listener.
//
// When systemd passed sockets (LISTEN_FDS, socket activation), it uses the
// one named "control" or else the only Unix stream socket among them, closes
// the others, and reports activated=true; path is not used then, and the
// socket file belongs to systemd (it is not removed on close).
//
// Otherwise it creates the socket at path: the parent directory is created
// 0700 when missing, and an existing one is refused when group or others may
// write to it without the sticky bit, or when it belongs to another user
// (other than root). An existing socket file is removed only when nothing
// answers on it; when a server answers, Listen fails with "another diskd is
// already listening on PATH". A file that is not a socket is never removed.
// The socket is created 0600 (the mode is set before bind, so it is never
// reachable with a looser one) and is removed when the listener is closed.
func Listen(path string, log *slog.Logger) (ln net.Listener, activated bool, err error) {
	log = defaults.Logger(log)
	ln, err = activatedListener(log)
	if err != nil || ln != nil {
		return ln, ln != nil, err
	}
	ln, err = createListener(path)
	if err != nil {
		return nil, false, err
	}
	log.Info("control socket created", "path", path)
	return ln, false, nil
}

// activatedListener returns the socket systemd passed, nil when it passed
// none.
func activatedListener(log *slog.Logger) (net.Listener, error) {
	passed := os.Getenv("LISTEN_PID") == strconv.Itoa(os.Getpid()) && os.Getenv("LISTEN_FDS") != ""
	byName, err := activation.ListenersWithNames()
	if err != nil {
		return nil, fmt.Errorf("control socket: sockets from systemd: %w", err)
	}
	var chosen net.Listener
	var stream []net.Listener
	for name, lns := range byName {
		for _, l := range lns {
			if l.Addr().Network() != "unix" {
				continue
			}
			if name == "control" && chosen == nil {
				chosen = l
			}
			stream = append(stream, l)
		}
	}
	if chosen == nil && len(stream) == 1 {
		chosen = stream[0]
	}
	for _, lns := range byName {
		for _, l := range lns {
			if l != chosen {
				log.Warn("control socket: closing a socket from systemd that is not the control socket",
					"addr", l.Addr().String(), "network", l.Addr().Network())
				l.Close()
			}
		}
	}
	switch {
	case chosen != nil:
		log.Info("control socket from systemd", "addr", chosen.Addr().String())
		return chosen, nil
	case len(stream) > 1:
		return nil, fmt.Errorf("control socket: systemd passed %d Unix stream sockets and none is named \"control\"", len(stream))
	case passed:
		return nil, errors.New("control socket: systemd passed sockets but none is a Unix stream socket")
	}
	return nil, nil
}

func createListener(path string) (net.Listener, error) {
	if path == "" {
		return nil, errors.New("control socket: no socket path")
	}
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("control socket: path %s is too long (%d bytes, at most %d)", path, len(path), maxSocketPath)
	}
	dir := filepath.Dir(path)
	if err := checkDir(dir); err != nil {
		return nil, err
	}
	// Hold a lock on the directory while checking for and replacing a stale
	// socket, so that two daemons starting at once cannot both decide the
	// socket is stale and remove each other's. The lock is best effort: a
	// directory that cannot be locked only reopens that narrow race.
	defer lockDir(dir)()
	if err := removeStale(path); err != nil {
		return nil, err
	}
	return bindUnix(path)
}

// checkDir creates dir 0700 when missing, and refuses one that other users
// could use to replace our socket.
func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("control socket: create directory: %w", err)
		}
		fi, err = os.Stat(dir)
	}
	if err != nil {
		return fmt.Errorf("control socket: directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("control socket: %s is not a directory", dir)
	}
	if fi.Mode().Perm()&0o022 != 0 && fi.Mode()&fs.ModeSticky == 0 {
		return fmt.Errorf("control socket: refusing directory %s: writable by group or others without the sticky bit (mode %04o)",
			dir, fi.Mode().Perm())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("control socket: refusing directory %s: owned by uid %d, not by root or by us", dir, st.Uid)
	}
	return nil
}

// lockDir takes an exclusive flock on dir and returns its release; when
// that fails it returns a no-op release.
func lockDir(dir string) (unlock func()) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return func() {}
	}
	for {
		err = unix.Flock(fd, unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		unix.Close(fd)
		return func() {}
	}
	return func() { unix.Close(fd) }
}

// removeStale removes a socket file at path that nobody answers on.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("control socket: %s exists and is not a socket; not removing it", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("another diskd is already listening on %s", path)
	}
	if errors.Is(err, syscall.EAGAIN) {
		return fmt.Errorf("another diskd is already listening on %s (its backlog is full)", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("control socket: cannot tell whether %s is in use: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("control socket: remove stale socket: %w", err)
	}
	return nil
}

// bindUnix creates a listening Unix stream socket at path with mode 0600.
// The mode is set on the socket before bind (Linux creates the file with
// the socket inode's mode, less the umask), so there is no moment at which
// the file exists with a looser mode.
func bindUnix(path string) (net.Listener, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("control socket: socket: %w", err)
	}
	fail := func(what string, err error, bound bool) (net.Listener, error) {
		unix.Close(fd)
		if bound {
			os.Remove(path)
		}
		return nil, fmt.Errorf("control socket: %s %s: %w", what, path, err)
	}
	if err := unix.Fchmod(fd, 0o600); err != nil {
		return fail("chmod", err, false)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		return fail("bind", err, false)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		return fail("chmod", err, true)
	}
	if err := unix.Listen(fd, unix.SOMAXCONN); err != nil {
		return fail("listen", err, true)
	}
	f := os.NewFile(uintptr(fd), path)
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("control socket: listen %s: %w", path, err)
	}
	ul, ok := ln.(*net.UnixListener)
	if !ok {
		ln.Close()
		os.Remove(path)
		return nil, fmt.Errorf("control socket: listen %s: not a Unix listener", path)
	}
	ul.SetUnlinkOnClose(true)
	return ul, nil
}
