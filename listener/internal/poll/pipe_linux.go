//go:build linux

package poll

import "golang.org/x/sys/unix"

// pipeSize is what each splice pipe is grown to: a 1 MiB pipe moves a bulk transfer in far
// fewer steps than the 64 KiB default.
const pipeSize = 1 << 20

// idlePipes is how many empty pipes a loop keeps for the next bulk transfer.
const idlePipes = 8

// maxPipes is how many pipes a loop may have at once, in use or idle.
const maxPipes = 32

// Pipe is a kernel pipe used to splice one direction of one connection. A direction holds it
// only while bytes sit in it.
type Pipe struct {
	R, W int
	Size int // capacity: pipeSize, or the default when growing it was refused
}

// Pipes hands out a loop's pipes. It creates at most maxPipes; a direction that finds none
// copies through the loop's buffer, so memory stays bounded whatever the load.
type Pipes struct {
	free    []*Pipe
	created int
}

// Take returns an empty pipe, or nil when the pool is exhausted or a pipe cannot be made.
func (pp *Pipes) Take() *Pipe {
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
	p := &Pipe{R: fds[0], W: fds[1], Size: 64 << 10}
	if n, err := unix.FcntlInt(uintptr(p.W), unix.F_SETPIPE_SZ, pipeSize); err == nil {
		p.Size = n
	}
	pp.created++
	return p
}

// Put gives back an empty pipe.
func (pp *Pipes) Put(p *Pipe) {
	if len(pp.free) >= idlePipes {
		pp.Discard(p)
		return
	}
	pp.free = append(pp.free, p)
}

// Discard closes a pipe, such as one that still holds the bytes of a reset connection.
func (pp *Pipes) Discard(p *Pipe) {
	unix.Close(p.R)
	unix.Close(p.W)
	pp.created--
}

// CloseAll closes the idle pipes; call it once no direction holds one.
func (pp *Pipes) CloseAll() {
	for _, p := range pp.free {
		pp.Discard(p)
	}
	pp.free = nil
}
