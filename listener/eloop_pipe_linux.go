//go:build linux

package listener

import "golang.org/x/sys/unix"

// pipeSize is what each splice pipe is grown to: a 1 MiB pipe moves a bulk transfer in far
// fewer steps than the 64 KiB default.
const pipeSize = 1 << 20

// idlePipes is how many empty pipes a loop keeps for the next bulk transfer.
const idlePipes = 8

// maxPipes is how many pipes a loop may have at once, in use or idle.
const maxPipes = 32

// pipe is a kernel pipe used to splice one direction of one connection. A direction holds it
// only while bytes sit in it.
type pipe struct {
	r, w int
	size int // capacity: pipeSize, or the default when growing it was refused
}

// pipePool hands out a loop's pipes. It creates at most maxPipes; a direction that finds none
// copies through the loop's buffer, so memory stays bounded whatever the load.
type pipePool struct {
	free    []*pipe
	created int
}

// take returns an empty pipe, or nil when the pool is exhausted or a pipe cannot be made.
func (pp *pipePool) take() *pipe {
	if n := len(pp.free); n > 0 {
		p := pp.free[n-1]
		pp.free = pp.free[:n-1]
		return p
	}
	if pp.created >= maxPipes {
		return nil
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return nil
	}
	p := &pipe{r: fds[0], w: fds[1], size: 64 << 10}
	if n, err := unix.FcntlInt(uintptr(p.w), unix.F_SETPIPE_SZ, pipeSize); err == nil {
		p.size = n
	}
	pp.created++
	return p
}

// put gives back an empty pipe.
func (pp *pipePool) put(p *pipe) {
	if len(pp.free) >= idlePipes {
		pp.discard(p)
		return
	}
	pp.free = append(pp.free, p)
}

// discard closes a pipe, such as one that still holds the bytes of a reset connection.
func (pp *pipePool) discard(p *pipe) {
	unix.Close(p.r)
	unix.Close(p.w)
	pp.created--
}

func (pp *pipePool) closeAll() {
	for _, p := range pp.free {
		pp.discard(p)
	}
	pp.free = nil
}
