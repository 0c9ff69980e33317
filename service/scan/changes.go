package scan

import (
	"context"
	"sync"
)

// WatchChanges watches what can change this host's disks and calls changed
// for each such change until ctx is done, then returns once both of its
// watchers have stopped:
//
//   - the kernel's block uevents for the devices that globs select (every
//     device when globs is empty); a lost-events overflow always counts;
//   - the mount table, where only a change to the mounts of block devices
//     counts (mounting a network namespace, a tmpfs or a container's
//     overlay changes no disk's mount points).
//
// changed is called from the watchers' goroutines and should only trigger a
// debounced rescan. A watcher that cannot start or fails for good is
// reported once to unavailable (with what it watches), and the caller's
// periodic rescan is all there is for what it would have seen.
func WatchChanges(ctx context.Context, globs []string, changed func(), unavailable func(what string, err error)) {
	var wg sync.WaitGroup
	wg.Go(func() {
		err := WatchUevents(ctx, func(ev Uevent) {
			if ev.Action == ActionOverflow || Matches(globs, ev.DevName) {
				changed()
			}
		})
		if err != nil && ctx.Err() == nil {
			unavailable("kernel uevents", err)
		}
	})
	wg.Go(func() {
		last, _ := BlockMounts()
		err := WatchMounts(ctx, func() {
			now, err := BlockMounts()
			if err == nil && now == last {
				return
			}
			if err == nil {
				last = now
			}
			changed()
		})
		if err != nil && ctx.Err() == nil {
			unavailable("mount table", err)
		}
	})
	wg.Wait()
}
