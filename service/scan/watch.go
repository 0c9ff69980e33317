package scan

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// waker turns the end of a context into a readable eventfd, so that a
// poll(2) loop notices it at once without a timeout.
type waker struct {
	fd   int
	stop chan struct{}
	wg   sync.WaitGroup
}

func newWaker(ctx context.Context) (*waker, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	w := &waker{fd: fd, stop: make(chan struct{})}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		select {
		case <-ctx.Done():
			one := [8]byte{1}
			_, _ = unix.Write(w.fd, one[:])
		case <-w.stop:
		}
	}()
	return w, nil
}

// close stops the goroutine and closes the eventfd.
func (w *waker) close() {
	close(w.stop)
	w.wg.Wait()
	_ = unix.Close(w.fd)
}

// waitFor polls fd for events and the waker; it reports the events that
// fd got, or done when the context has ended.
func (w *waker) waitFor(fd int, events int16) (revents int16, done bool, err error) {
	for {
		fds := []unix.PollFd{{Fd: int32(fd), Events: events}, {Fd: int32(w.fd), Events: unix.POLLIN}}
		_, err := unix.Poll(fds, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, false, fmt.Errorf("poll: %w", err)
		}
		if fds[1].Revents != 0 {
			return 0, true, nil
		}
		if fds[0].Revents&unix.POLLNVAL != 0 {
			return 0, false, errors.New("poll: file descriptor closed")
		}
		if fds[0].Revents != 0 {
			return fds[0].Revents, false, nil
		}
	}
}

// pollLoop waits for events on fd and hands the events it got to handle,
// until ctx is done (it then returns nil), waiting fails or handle fails.
// It closes fd when it returns.
func pollLoop(ctx context.Context, fd int, events int16, handle func(revents int16) error) error {
	defer unix.Close(fd)
	w, err := newWaker(ctx)
	if err != nil {
		return err
	}
	defer w.close()
	for {
		rev, done, err := w.waitFor(fd, events)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		if err := handle(rev); err != nil {
			return err
		}
	}
}
