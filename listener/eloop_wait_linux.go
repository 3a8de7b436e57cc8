//go:build linux

package listener

import (
	"runtime"
	"sync/atomic"
)

// How a loop waits for events. The ordinary wait (poll.Set.Wait) is a system call the Go
// scheduler knows of: the loop's P sits in the system-call state while it sleeps. The
// runtime's monitor takes such a P away and wakes another thread for it after about 20 µs
// when goroutines wait in its run queue or no other P is idle, and after 10 ms otherwise; the
// loop must then find a P again when its event comes. A held wait (poll.Set.WaitHeld) keeps
// the P: nothing to take, nothing to wake, no entersyscall/exitsyscall. It is off by default
// (defaultHeldWait): with the spare P that DefaultLoops leaves, the monitor rarely takes a
// waiting loop's P, and the measured gain was within the noise on a quiet machine.
//
// A loop holds its P only while that is safe and useful:
//   - busy: the previous wait returned events. A held wait that times out or is interrupted
//     makes the next wait an ordinary one, so an idle loop sleeps with its P given back and
//     never spins;
//   - bounded: at most heldWaitMillis (or until the loop's next timer, if sooner);
//   - with a P to spare: fewer loops running in the process, of every EventLoops, than
//     GOMAXPROCS (holdsP), checked each time the loop turns busy and every recheckEvery held
//     waits, so that more loops started later, or a GOMAXPROCS lowered at run time (by hand,
//     or by the runtime following a container's CPU limit), stop it. The spare P runs
//     everything else: the notifier, the admin API, health checks, signal handling, the
//     collector's workers;
//   - interruptible: a signal ends a held wait and the loop yields its P at once
//     (poll.Set.WaitHeld), so a stop-the-world, a preemption or SIGTERM waits for no timeout.

// heldWaitMillis bounds one held wait when they are on: long enough to cover the gap between
// two messages under load, short enough that a loop whose load stops gives its P back within
// a few ms.
const heldWaitMillis = 2

// defaultHeldWait is EventLoops.heldWait unless a test sets it: 0, held waits off. Measured
// (bench/EXPERIMENTS.md, "A held epoll_wait"): the monitor's wake-ups went (nanosleep 0.024
// → 0.003 per message), but the CPU per message did not move beyond the noise (0.82–1.03×
// over eight A/B sets, median 1.00×), nor did the connection rate. heldWaitMillis turns
// them on.
const defaultHeldWait = 0

// loopsRunning counts the event loops running in the process, of every EventLoops: Servers
// that do not share theirs each start their own.
var loopsRunning atomic.Int32

// holdsP reports whether loops event loops may hold their Ps in a wait among procs Ps (the
// current GOMAXPROCS): only while at least one P stays free for everything else.
func holdsP(loops, procs int) bool { return loops < procs }

// recheckEvery is how many held waits in a row a loop makes before it checks mayHoldP again
// (about every 10 ms under a small-message load): GOMAXPROCS takes the scheduler's lock.
const recheckEvery = 64

// mayHoldP reports whether, now, the loops leave a P to spare.
func (l *loop) mayHoldP() bool { return holdsP(int(loopsRunning.Load()), runtime.GOMAXPROCS(0)) }

// wait waits for events: a held wait while the loop is busy and may hold its P, the ordinary
// wait otherwise. It returns how many events came.
func (l *loop) wait() (int, error) {
	ms := l.waitMillis()
	if !l.held {
		n, err := l.set.Wait(ms)
		l.held = l.el.heldWait > 0 && n > 0 && l.mayHoldP()
		return n, err
	}
	if ms < 0 || ms > l.el.heldWait {
		ms = l.el.heldWait
	}
	n, interrupted, err := l.set.WaitHeld(ms)
	l.heldWaits++
	l.held = n > 0 && (l.heldWaits%recheckEvery != 0 || l.mayHoldP())
	if interrupted {
		l.heldInterrupts++
	}
	return n, err
}
