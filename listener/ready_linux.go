package listener

import (
	"net"
	"os"
	"syscall"
	"unsafe"
)

// readyChunk waits until src has something to read (data, FIN or an error) and returns how
// much to splice now: the bytes already queued, at most chunk (chunk itself when nothing is
// queued, so that ReadFrom meets the FIN or the error at once).
//
// Why: Go's splice takes a pipe (two descriptors) for each ReadFrom and keeps it while it
// waits for the rest of the chunk. An idle connection would then cost six descriptors instead
// of two, and 5,000 held connections would need 30,000: past a 20,000 limit, accepts and dials
// fail with EMFILE. Waiting here holds no pipe, and a chunk of only the queued bytes never
// waits inside splice for its source. Read deadlines apply to the wait.
func readyChunk(src *net.TCPConn, chunk int64) (int64, error) {
	rc, err := src.SyscallConn()
	if err != nil {
		return 0, err
	}
	queued := 0
	var peekErr error
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		for err == syscall.EINTR {
			n, _, err = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		}
		switch {
		case err == syscall.EAGAIN:
			return false // not readable yet: wait in the poller, holding nothing
		case err != nil:
			// The peek has taken the socket's pending error (a reset): pass it on, or the
			// splice after it would read a clean EOF.
			peekErr = os.NewSyscallError("recvfrom", err)
		case n > 0:
			queued = inQueue(fd)
		}
		return true
	})
	if err == nil {
		err = peekErr
	}
	if err != nil {
		return 0, err
	}
	if queued <= 0 {
		return chunk, nil
	}
	return min(int64(queued), chunk), nil
}

// inQueue is the number of bytes in a socket's receive queue (SIOCINQ); 0 if unknown.
func inQueue(fd uintptr) int {
	var n int32
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, siocinq, uintptr(unsafe.Pointer(&n))); errno != 0 {
		return 0
	}
	return int(n)
}

// siocinq is SIOCINQ (= FIONREAD), which package syscall does not name.
const siocinq = 0x541B
