package scan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// Uevent is a kernel event about a block device.
type Uevent struct {
	Action    string // add, remove, change, move, online, offline, bind, unbind; or "overflow"
	DevName   string // device node, e.g. /dev/loop3; empty when the kernel gave none
	Subsystem string // always "block" for events passed on by WatchUevents
	DevType   string // "disk" or "partition"
	DevPath   string // sysfs path, e.g. /devices/virtual/block/loop3
}

// ActionOverflow is the Action of the synthetic Uevent that WatchUevents
// sends when the kernel dropped events because the socket buffer was full:
// the caller should rescan everything.
const ActionOverflow = "overflow"

const (
	// ueventGroup is the netlink multicast group of the kernel's own
	// uevents (group 2 is udev's re-broadcast, which is not used).
	ueventGroup = 1
	// ueventRcvBuf is the socket receive buffer asked for.
	ueventRcvBuf = 8 << 20
	// maxUevent is the longest message accepted; the kernel's are at most
	// UEVENT_BUFFER_SIZE (2048) bytes of variables plus the header.
	maxUevent = 8192
	// maxUeventFields is the most NUL-separated fields accepted.
	maxUeventFields = 128
	// maxUeventValue bounds each string of a Uevent.
	maxUeventValue = 1024
)

// knownAction reports whether a is an action the kernel sends (enum
// kobject_action).
func knownAction(a string) bool {
	switch a {
	case "add", "remove", "change", "move", "online", "offline", "bind", "unbind":
		return true
	}
	return false
}

// WatchUevents listens to the kernel's uevents (NETLINK_KOBJECT_UEVENT,
// group 1) and calls fn for each event of the block subsystem until ctx is
// done; it then returns nil. It returns an error at once when the socket
// cannot be opened, and later only if receiving fails for good; the caller
// then falls back to polling.
//
// Messages are parsed strictly and boundedly: only messages sent by the
// kernel itself (netlink port 0) in the kernel's format are accepted; libudev
// messages and malformed ones are ignored. When the kernel reports that
// events were lost (ENOBUFS), fn receives Uevent{Action: "overflow"}.
//
// fn is called synchronously from the receiving loop: it should be quick
// (hand the event on and return), or the socket buffer fills and events are
// lost. The caller should debounce.
func WatchUevents(ctx context.Context, fn func(Uevent)) error {
	s, err := openUevents()
	if err != nil {
		return err
	}
	return s.run(ctx, fn)
}

// ueventSocket is a bound uevent netlink socket.
type ueventSocket struct{ fd int }

func openUevents() (*ueventSocket, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_KOBJECT_UEVENT)
	if err != nil {
		return nil, fmt.Errorf("uevents: cannot open netlink socket: %w", err)
	}
	// Ask for a big buffer: FORCE passes rmem_max when we have
	// CAP_NET_ADMIN; otherwise take what rmem_max allows.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, ueventRcvBuf) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, ueventRcvBuf)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: ueventGroup}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("uevents: cannot bind netlink socket: %w", err)
	}
	return &ueventSocket{fd: fd}, nil
}

// run receives events until ctx is done and closes the socket.
func (s *ueventSocket) run(ctx context.Context, fn func(Uevent)) error {
	buf := make([]byte, maxUevent+1)
	err := pollLoop(ctx, s.fd, unix.POLLIN, func(int16) error { return s.drain(ctx, buf, fn) })
	if err != nil {
		return fmt.Errorf("uevents: %w", err)
	}
	return nil
}

// drain receives every queued message, until the socket would block.
func (s *ueventSocket) drain(ctx context.Context, buf []byte, fn func(Uevent)) error {
	for ctx.Err() == nil {
		n, _, rflags, from, err := unix.Recvmsg(s.fd, buf, nil, unix.MSG_DONTWAIT)
		switch {
		case errors.Is(err, unix.EAGAIN):
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ENOBUFS):
			// The kernel dropped messages: have everything rescanned.
			fn(Uevent{Action: ActionOverflow})
			continue
		case err != nil:
			return fmt.Errorf("receive: %w", err)
		}
		nl, ok := from.(*unix.SockaddrNetlink)
		if !ok || nl.Pid != 0 || rflags&unix.MSG_TRUNC != 0 || n > maxUevent {
			continue // not from the kernel, or too long
		}
		if ev, ok := parseUevent(buf[:n]); ok && ev.Subsystem == "block" {
			fn(ev)
		}
	}
	return nil
}

// parseUevent parses one kernel uevent message:
//
//	ACTION@DEVPATH \0 KEY=VALUE \0 KEY=VALUE \0 ...
//
// It requires ACTION, DEVPATH and SUBSYSTEM, consistent with the header, a
// known action, upper-case keys, no repeated key and a DEVNAME (when there
// is one) that stays under /dev. Anything else is rejected.
func parseUevent(msg []byte) (Uevent, bool) {
	if len(msg) == 0 || len(msg) > maxUevent || bytes.HasPrefix(msg, []byte("libudev")) {
		return Uevent{}, false
	}
	msg = bytes.TrimSuffix(msg, []byte{0})
	fields := bytes.Split(msg, []byte{0})
	if len(fields) < 2 || len(fields) > maxUeventFields {
		return Uevent{}, false
	}
	hAction, hPath, ok := strings.Cut(string(fields[0]), "@")
	if !ok {
		return Uevent{}, false
	}
	vars := make(map[string]string, len(fields)-1)
	for _, f := range fields[1:] {
		k, v, ok := strings.Cut(string(f), "=")
		if !ok || !validKey(k) || len(v) > maxUeventValue {
			return Uevent{}, false
		}
		if _, dup := vars[k]; dup {
			return Uevent{}, false
		}
		vars[k] = v
	}
	ev := Uevent{
		Action:    vars["ACTION"],
		Subsystem: vars["SUBSYSTEM"],
		DevType:   vars["DEVTYPE"],
		DevPath:   vars["DEVPATH"],
	}
	if !knownAction(ev.Action) || ev.Action != hAction || ev.DevPath != hPath ||
		!strings.HasPrefix(ev.DevPath, "/") || ev.Subsystem == "" {
		return Uevent{}, false
	}
	if name, ok := vars["DEVNAME"]; ok {
		dev, ok := devNode(name)
		if !ok {
			return Uevent{}, false
		}
		ev.DevName = dev
	}
	ev.Subsystem = clean(ev.Subsystem, maxUeventValue)
	ev.DevType = clean(ev.DevType, maxUeventValue)
	ev.DevPath = clean(ev.DevPath, maxUeventValue)
	ev.DevName = clean(ev.DevName, maxUeventValue)
	return ev, true
}

// validKey reports whether k looks like a uevent variable name.
func validKey(k string) bool {
	if k == "" || len(k) > 64 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !('A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// devNode turns the kernel's DEVNAME (relative to /dev, or absolute) into a
// path under /dev, refusing names that would leave it.
func devNode(name string) (string, bool) {
	p := name
	if !strings.HasPrefix(p, "/") {
		p = "/dev/" + p
	}
	if name == "" || path.Clean(p) != p || !strings.HasPrefix(p, "/dev/") {
		return "", false
	}
	return p, true
}
