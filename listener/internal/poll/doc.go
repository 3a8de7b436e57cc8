// Package poll is the mechanism under fulcrum's event loops, apart from what they do with
// connections: an epoll set whose registrations carry a generation tag (Set), an eventfd that
// wakes a loop for the tasks other goroutines post to it (Queue), a pool of splice pipes
// (Pipes), and raw socket-address helpers that allocate nothing per connection. It imports
// nothing of fulcrum's; the listener package's loops plug their domain in through the value a
// registration carries and the tasks they post.
//
//	set, _ := poll.NewSet[mySlot](256)
//	q, _ := poll.NewQueue[*myLoop](onPanic)
//	set.Add(q.Fd(), unix.EPOLLIN, wakeSlot)
//	for {
//		n, _ := set.Wait(timeoutMillis)
//		for i := range n {
//			if v, ev, ok := set.Event(i); ok { handle(v, ev) } // a stale event is dropped
//		}
//		q.Run(loop, false)
//	}
//
// Every type here is owned by one goroutine (its loop), except Queue.Post and Queue.Call,
// which any goroutine may call. Linux only.
package poll
