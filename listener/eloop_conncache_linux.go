//go:build linux

package listener

import "sync/atomic"

// connCache keeps a loop's ended connections for its next ones, so that a connection costs no
// allocation in steady state. A loopConn is reused only when nothing outside its loop can
// still reach it:
//
//   - a connection that was opened hands &c.info and its meters to the notifier with its
//     Closed notice; the notifier gives the struct back (reuse) after delivering it, which
//     was its last use;
//   - a connection that waited for a backend slot or a name lookup is pinned: a goroutine
//     holds it and may still post a result, so it is left to the collector;
//   - any other one is back at once when it ends.
//
// Only startConn takes from the cache, never while a connection's handler runs, so a loop's
// own touches of a connection after finish (its deferred steps, its callers' returns) are over
// before the struct serves again: a struct given back goes to the loop that owns it, never to
// another loop. Stale epoll events of the old connection's descriptors cannot reach it: their
// registrations are forgotten at close and their generation tags no longer match. A relay
// keeps nothing of a connection after its stop, nor does anything else on the loop: the
// timers and the connList let go of it in finish.
type connCache struct {
	idle  *loopConn // ready for the next connection; the loop's own, linked through cacheNext
	nIdle int
	// back is what the notifier gave back, pushed from its goroutine and taken whole by the
	// loop: a stack linked through cacheNext (only ever emptied whole, so no ABA).
	back  atomic.Pointer[loopConn]
	nBack atomic.Int32
}

// maxCachedConns bounds what a loop keeps, idle and given back each: the connections a burst
// leaves behind beyond it go to the collector. 1024 covers a loop accepting 100,000
// connections a second whose ends wait up to kickEvery for the notifier; a struct is 576
// bytes (a size class of its own), so a loop keeps at most about 1.1 MiB after a burst.
const maxCachedConns = 1024

// newConn is a connection of srv on client socket fd, reused when the cache has one.
func (l *loop) newConn(srv *loopServer, fd int) *loopConn {
	c := l.cache.take()
	if c == nil {
		c = new(loopConn)
	}
	*c = loopConn{home: l, srv: srv, cfd: fd, bfd: -1, timerIndex: -1}
	return c
}

// take is an idle connection struct, or nil. Loop only.
func (cc *connCache) take() *loopConn {
	if cc.idle == nil && cc.back.Load() != nil {
		for c := cc.back.Swap(nil); c != nil; {
			next := c.cacheNext
			cc.nBack.Add(-1)
			cc.put(c)
			c = next
		}
	}
	c := cc.idle
	if c != nil {
		cc.idle, c.cacheNext = c.cacheNext, nil
		cc.nIdle--
	}
	return c
}

// put keeps c for reuse. Loop only.
func (cc *connCache) put(c *loopConn) {
	if cc.nIdle >= maxCachedConns {
		return
	}
	c.cacheNext = cc.idle
	cc.idle = c
	cc.nIdle++
}

// giveBack keeps c for its loop's reuse; any goroutine.
func (cc *connCache) giveBack(c *loopConn) {
	if cc.nBack.Add(1) > maxCachedConns {
		cc.nBack.Add(-1)
		return
	}
	for {
		head := cc.back.Load()
		c.cacheNext = head
		if cc.back.CompareAndSwap(head, c) {
			return
		}
	}
}

var _ reusable = (*loopConn)(nil)

// reuse implements reusable: the notifier has delivered c's Closed notice, its last.
func (c *loopConn) reuse() { c.home.cache.giveBack(c) }

// release is the end of c's use by its loop, in finish: a connection nothing else can reach
// goes back to the cache at once; an opened one goes with its notice (closedReuse) instead.
func (l *loop) release(c *loopConn) {
	if !c.pinned {
		l.cache.put(c)
	}
}

// reuser is what finish hands the book with an opened connection's end: c, unless a goroutine
// may still reach it.
func (c *loopConn) reuser() reusable {
	if c.pinned {
		return nil
	}
	return c
}
