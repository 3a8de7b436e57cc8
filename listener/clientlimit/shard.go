package clientlimit

import (
	"sync"
)

// none ends a list, or marks an entry in no list.
const none int32 = -1

// entry is one client. Entries live in their shard's arena and link by index, so the lists
// cost no allocation and the garbage collector has no pointers to follow.
type entry struct {
	k          key
	open       int32  // connections admitted and not yet released
	gen        uint32 // bumped when the slot is given to another client: stale tickets miss
	prev, next int32  // the idle list, when open == 0
	bucket     bucket
}

// shard is one lock's share of the table. mu guards every field. The idle list holds the
// clients with no open connection, most recently seen first: they alone may be forgotten,
// from its tail. Clients with open connections are in no list.
type shard struct {
	mu         sync.Mutex
	index      map[key]int32 // client → its entry in arena
	arena      []entry
	free       []int32  // arena slots of forgotten clients
	head, tail int32    // the idle list
	capacity   int      // clients this shard remembers before forgetting idle ones
	_          [64]byte // keeps neighbouring shards' locks off one cache line
}

func (sh *shard) init(capacity int) {
	sh.index = make(map[key]int32)
	sh.head, sh.tail = none, none
	sh.capacity = capacity
}

func (sh *shard) admit(k key, t *Table, now int64) (Ticket, string) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	i, known := sh.index[k]
	if !known {
		i = sh.add(k, t, now)
	}
	e := &sh.arena[i]
	if t.rate.On() && !e.bucket.take(t.rate, now) {
		sh.touch(i)
		return Ticket{}, ReasonRate
	}
	if t.maxConns > 0 && int(e.open) >= t.maxConns {
		return Ticket{}, ReasonConns // open > 0: in no list, nothing to touch
	}
	if e.open == 0 {
		sh.unlink(i)
	}
	e.open++
	return Ticket{sh: sh, idx: i, gen: e.gen}, ""
}

// add makes an entry for a new client, forgetting the least recently seen idle client when
// the shard is at its capacity. The entry starts at the head of the idle list.
func (sh *shard) add(k key, t *Table, now int64) int32 {
	if len(sh.index) >= sh.capacity && sh.tail != none {
		old := sh.tail
		sh.unlink(old)
		delete(sh.index, sh.arena[old].k)
		sh.free = append(sh.free, old)
	}
	var i int32
	if n := len(sh.free); n > 0 {
		i, sh.free = sh.free[n-1], sh.free[:n-1]
	} else {
		sh.arena = append(sh.arena, entry{})
		i = int32(len(sh.arena) - 1)
	}
	sh.arena[i] = entry{k: k, prev: none, next: none, gen: sh.arena[i].gen + 1}
	if t.rate.On() {
		sh.arena[i].bucket = full(t.rate, now)
	}
	sh.index[k] = i
	sh.pushFront(i)
	return i
}

func (sh *shard) release(i int32, gen uint32) error {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := &sh.arena[i]
	if e.gen != gen || e.open <= 0 {
		return ErrReleaseBug
	}
	e.open--
	if e.open == 0 {
		sh.pushFront(i)
	}
	return nil
}

// touch moves an idle client to the head of the idle list: it was just seen.
func (sh *shard) touch(i int32) {
	if sh.arena[i].open == 0 {
		sh.unlink(i)
		sh.pushFront(i)
	}
}

func (sh *shard) pushFront(i int32) {
	e := &sh.arena[i]
	e.prev, e.next = none, sh.head
	if sh.head != none {
		sh.arena[sh.head].prev = i
	} else {
		sh.tail = i
	}
	sh.head = i
}

func (sh *shard) unlink(i int32) {
	e := &sh.arena[i]
	if e.prev != none {
		sh.arena[e.prev].next = e.next
	} else {
		sh.head = e.next
	}
	if e.next != none {
		sh.arena[e.next].prev = e.prev
	} else {
		sh.tail = e.prev
	}
	e.prev, e.next = none, none
}
