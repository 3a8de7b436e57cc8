package poll

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// ownSets holds the epoll descriptors of every open Set, which Detach leaves alone.
var ownSets sync.Map // int → struct{}

// Detach takes the socket fd refers to out of every epoll set of the process that is not a
// Set of this package: in practice the Go runtime's network poller. A listening socket served
// by the loops is also held by the caller's net.Listener and often by an os.File duplicate
// kept to hand it to an upgrade's successor; the runtime registers each of those,
// edge-triggered, so every connection that arrives would wake an idle runtime thread that
// finds nothing to do (an epoll_pwait and a thread wake-up per connection, besides the loop's
// own). After Detach, Go code must not wait on those descriptors (Accept would never wake);
// closing them stays as before. It returns how many registrations it removed.
//
// It reads /proc/self/fdinfo, which lists each epoll set's descriptors with their inodes.
func Detach(fd int) (int, error) {
	ino, watches, err := foreignWatches(fd)
	if err != nil {
		return 0, err
	}
	removed := 0
	for _, w := range watches {
		if sameInode(w.fd, ino) && unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, w.fd, nil) == nil {
			removed++
		}
	}
	return removed, nil
}

// Watchers counts the registrations of the socket fd refers to in epoll sets that are not a
// Set of this package: 0 once Detach has run, as long as nothing registered it again.
func Watchers(fd int) (int, error) {
	_, watches, err := foreignWatches(fd)
	return len(watches), err
}

// watch is one registration: descriptor fd in epoll set epfd.
type watch struct{ epfd, fd int }

// foreignWatches lists the registrations of fd's file (by inode, ino) in epoll sets that no
// Set owns.
func foreignWatches(fd int) (ino uint64, watches []watch, err error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, nil, os.NewSyscallError("fstat", err)
	}
	dir, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, nil, fmt.Errorf("list descriptors: %w", err)
	}
	for _, e := range dir {
		epfd, err := strconv.Atoi(e.Name())
		if err != nil || !foreignEpoll(epfd) {
			continue
		}
		for _, tfd := range watchedInode(epfd, st.Ino) {
			watches = append(watches, watch{epfd, tfd})
		}
	}
	return st.Ino, watches, nil
}

// foreignEpoll reports whether fd is an epoll instance that no Set of this package owns.
func foreignEpoll(fd int) bool {
	if _, own := ownSets.Load(fd); own {
		return false
	}
	link, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	return err == nil && link == "anon_inode:[eventpoll]"
}

// watchedInode lists the descriptors that epoll set epfd watches whose file has inode ino.
// A line of its fdinfo reads "tfd:  5 events: 8000201d data: ... pos:0 ino:5d33a3 sdev:9".
func watchedInode(epfd int, ino uint64) []int {
	b, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(epfd))
	if err != nil {
		return nil
	}
	var fds []int
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) < 2 || string(f[0]) != "tfd:" {
			continue
		}
		tfd, err := strconv.Atoi(string(f[1]))
		if err != nil {
			continue
		}
		for _, kv := range f[2:] {
			if v, ok := bytes.CutPrefix(kv, []byte("ino:")); ok {
				if n, err := strconv.ParseUint(string(v), 16, 64); err == nil && n == ino {
					fds = append(fds, tfd)
				}
			}
		}
	}
	return fds
}

// sameInode reports whether fd still refers to the file with inode ino: its number may have
// been closed and reused since the epoll set's listing was read.
func sameInode(fd int, ino uint64) bool {
	var st unix.Stat_t
	return unix.Fstat(fd, &st) == nil && st.Ino == ino
}
