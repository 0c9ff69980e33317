// Package schedule runs diskd's periodic and on-demand jobs (scan, announce,
// expire) and speaks to systemd's service manager: READY=1, STATUS= and the
// watchdog.
//
// One loop goroutine owns all timing. Jobs run in goroutines of their own,
// one instance of a job at a time, each under its deadline; a run requested
// while the job is running is done once more right after it ends. The loop,
// never a job, pets the watchdog (WATCHDOG=1 at half of WATCHDOG_USEC), and
// before each pet it calls the Health check on the loop itself, so:
//
//   - a hung child (a blkid that never answers) stalls only its job, and the
//     watchdog keeps being petted while the deadline kills the child;
//   - a wedged loop or a deadlocked Health check (the inventory's lock, say)
//     stops the pets, and systemd restarts the service.
//
// It is not a general worker pool: jobs are few, named and fixed at start.
package schedule

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Job is a unit of work the scheduler runs.
type Job struct {
	Name string
	// Every is the period between runs; zero means only on request.
	Every time.Duration
	// Jitter, between 0 and 1, shortens each period by a random fraction of
	// up to Jitter, so that many hosts do not fall into step. Periods are
	// never lengthened.
	Jitter float64
	// Timeout bounds one run; its context is cancelled then. Zero: no bound.
	Timeout time.Duration
	// Immediate runs the job once as soon as the scheduler starts.
	Immediate bool
	// Run does the work. Its error is logged and returned to whoever asked
	// for that run with RunNow.
	Run func(ctx context.Context) error
}

// ShutdownGrace is how long Run waits for cancelled jobs to return.
const ShutdownGrace = 5 * time.Second

// Notifier sends a state string to the service manager; see sd_notify(3).
type Notifier func(state string) error

// SystemdNotifier is the real sd_notify through $NOTIFY_SOCKET. Without that
// variable it does nothing.
func SystemdNotifier(state string) error {
	_, err := daemon.SdNotify(false, state)
	return err
}

// Options configure a Scheduler.
type Options struct {
	Log *slog.Logger
	// Notify defaults to SystemdNotifier.
	Notify Notifier
	// Watchdog is the pet period; zero reads WATCHDOG_USEC (and WATCHDOG_PID)
	// from the environment and pets at half of it; negative disables it.
	Watchdog time.Duration
	// Health runs on the loop before each watchdog pet and before each
	// status update. It should touch the shared state the way the daemon
	// does (take its lock) and return quickly; if it never returns, the
	// watchdog starves, which is the point.
	Health func()
	// Status returns the one-line summary sent as STATUS= whenever it
	// changes (checked every StatusEvery, default 2s, and after every job run).
	Status      func() string
	StatusEvery time.Duration
}

// Handle names one job of a scheduler.
type Handle struct {
	s  *Scheduler
	id int
}

type request struct {
	id    int
	at    time.Time
	reply chan error // nil: nobody waits
}

type done struct {
	id  int
	err error
}

type jobState struct {
	Job
	next    time.Time // zero: not scheduled
	running bool
	again   bool         // a request arrived while running
	waiting []chan error // waiters for the next run that starts
	inRun   []chan error // waiters for the run under way
	runs    uint64
	lastErr error
}

// Scheduler owns the loop. Create it with New, add jobs, then Run.
type Scheduler struct {
	opts    Options
	jobs    []*jobState
	reqs    chan request
	dones   chan done
	started chan struct{}
	mu      sync.Mutex // guards the run counters read by Stats
	counts  map[string]JobStats
}

// JobStats counts one job's runs.
type JobStats struct {
	Runs     uint64
	Failures uint64
	LastErr  error
	LastRun  time.Time
}

// New returns a scheduler with no jobs.
func New(opts Options) *Scheduler {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Notify == nil {
		opts.Notify = SystemdNotifier
	}
	if opts.StatusEvery <= 0 {
		opts.StatusEvery = 2 * time.Second
	}
	return &Scheduler{
		opts:    opts,
		reqs:    make(chan request),
		started: make(chan struct{}),
		counts:  map[string]JobStats{},
	}
}

// Add registers a job; it must be called before Run.
func (s *Scheduler) Add(j Job) Handle {
	s.jobs = append(s.jobs, &jobState{Job: j})
	return Handle{s: s, id: len(s.jobs) - 1}
}

// Trigger asks for a run after delay (zero: at once). Requests coalesce: a
// run already due earlier stays earlier, and a request made while the job
// runs gives exactly one more run after it. It never blocks for long: it
// returns when the loop has taken the request, or when ctx ends.
func (h Handle) Trigger(ctx context.Context, delay time.Duration) {
	select {
	case h.s.reqs <- request{id: h.id, at: time.Now().Add(delay)}:
	case <-ctx.Done():
	}
}

// RunNow asks for a run at once and waits until a run that started after the
// request has finished, returning its error.
func (h Handle) RunNow(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case h.s.reqs <- request{id: h.id, at: time.Now(), reply: reply}:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stats returns the run counters of the named job.
func (s *Scheduler) Stats(name string) JobStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[name]
}

// Notify sends a state to the service manager, logging a failure.
func (s *Scheduler) Notify(state string) {
	if err := s.opts.Notify(state); err != nil {
		s.opts.Log.Warn("sd_notify failed", "state", state, "err", err)
	}
}

// Run is the loop. It returns when ctx is done, after cancelling the jobs
// under way and waiting for them to return, having sent STOPPING=1.
func (s *Scheduler) Run(ctx context.Context) error {
	wd := s.opts.Watchdog
	if wd == 0 {
		usec, err := daemon.SdWatchdogEnabled(false)
		if err != nil {
			return fmt.Errorf("reading the watchdog settings: %w", err)
		}
		wd = usec / 2
	}
	var wdC <-chan time.Time
	if wd > 0 {
		t := time.NewTicker(wd)
		defer t.Stop()
		wdC = t.C
		s.opts.Log.Info("watchdog enabled", "pet_every", wd)
	}
	statusT := time.NewTicker(s.opts.StatusEvery)
	defer statusT.Stop()

	// Room for every job's result, so that no job goroutine ever blocks on
	// it, also after a shutdown that gave up waiting.
	s.dones = make(chan done, len(s.jobs))
	jobCtx, cancelJobs := context.WithCancel(context.Background())
	defer cancelJobs()
	running := 0
	now := time.Now()
	for _, j := range s.jobs {
		switch {
		case j.Immediate:
			j.next = now
		case j.Every > 0:
			j.next = now.Add(s.period(j))
		}
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	lastStatus := ""
	status := func() {
		if s.opts.Status == nil {
			return
		}
		if st := s.opts.Status(); st != lastStatus {
			lastStatus = st
			s.Notify("STATUS=" + st)
		}
	}
	close(s.started)

	for {
		now = time.Now()
		// Start what is due; find the next wake-up.
		var wake time.Time
		for id, j := range s.jobs {
			if !j.next.IsZero() && !j.next.After(now) && !j.running {
				s.start(jobCtx, id)
				running++
			}
			if !j.next.IsZero() && !j.running && (wake.IsZero() || j.next.Before(wake)) {
				wake = j.next
			}
		}
		d := time.Hour
		if !wake.IsZero() {
			d = max(wake.Sub(now), 0)
		}
		timer.Reset(d)

		select {
		case <-ctx.Done():
			s.Notify("STOPPING=1")
			cancelJobs()
			grace := time.NewTimer(ShutdownGrace)
			defer grace.Stop()
			for running > 0 {
				select {
				case dn := <-s.dones:
					running--
					s.finish(dn, time.Now(), true)
				case <-grace.C:
					return fmt.Errorf("%d job(s) still running %v after shutdown began", running, ShutdownGrace)
				}
			}
			return nil
		case r := <-s.reqs:
			j := s.jobs[r.id]
			if r.reply != nil {
				j.waiting = append(j.waiting, r.reply)
			}
			if j.running {
				j.again = true
				// A request made during a run must see a later run, even
				// if it asked for a delay; keep the earliest time.
				if j.next.IsZero() || r.at.Before(j.next) {
					j.next = r.at
				}
			} else if j.next.IsZero() || r.at.Before(j.next) {
				j.next = r.at
			}
		case dn := <-s.dones:
			running--
			s.finish(dn, time.Now(), false)
			status()
		case <-wdC:
			if s.opts.Health != nil {
				s.opts.Health()
			}
			s.Notify("WATCHDOG=1")
		case <-statusT.C:
			if s.opts.Health != nil {
				s.opts.Health()
			}
			status()
		case <-timer.C:
		}
	}
}

// Started is closed once Run has scheduled the jobs and can take requests.
func (s *Scheduler) Started() <-chan struct{} { return s.started }

func (s *Scheduler) period(j *jobState) time.Duration {
	p := j.Every
	if j.Jitter > 0 {
		p -= time.Duration(rand.Float64() * j.Jitter * float64(p))
	}
	return p
}

func (s *Scheduler) start(parent context.Context, id int) {
	j := s.jobs[id]
	j.running, j.again = true, false
	j.inRun, j.waiting = j.waiting, nil
	j.next = time.Time{}
	run := j.Run
	timeout := j.Timeout
	go func() {
		ctx, cancel := parent, context.CancelFunc(func() {})
		if timeout > 0 {
			ctx, cancel = context.WithTimeout(parent, timeout)
		}
		err := run(ctx)
		cancel()
		s.dones <- done{id: id, err: err}
	}()
}

func (s *Scheduler) finish(dn done, now time.Time, stopping bool) {
	j := s.jobs[dn.id]
	j.running = false
	j.runs++
	j.lastErr = dn.err
	for _, w := range j.inRun {
		w <- dn.err
	}
	j.inRun = nil
	s.mu.Lock()
	st := s.counts[j.Name]
	st.Runs++
	st.LastErr, st.LastRun = dn.err, now
	if dn.err != nil {
		st.Failures++
	}
	s.counts[j.Name] = st
	s.mu.Unlock()
	if dn.err != nil && !stopping {
		s.opts.Log.Warn("job failed", "job", j.Name, "err", dn.err)
	}
	if stopping {
		for _, w := range j.waiting {
			w <- context.Canceled
		}
		j.waiting = nil
		return
	}
	switch {
	case j.again || len(j.waiting) > 0:
		if j.next.IsZero() {
			j.next = now
		}
	case j.Every > 0:
		if j.next.IsZero() {
			j.next = now.Add(s.period(j))
		}
	}
}
