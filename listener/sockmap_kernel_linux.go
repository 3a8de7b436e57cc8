//go:build linux

package listener

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// sockmapKernel is the kernel half of the sockmap mover (moverSockmap): two SOCKHASH maps and
// an sk_skb stream-verdict program, loaded once per EventLoops and shared by its loops (map
// updates are system calls, safe from any thread).
//
//	peers[cookie(x)] = peer of x   the redirect table, keyed per socket; no program on it
//	watch[cookie(x)] = x           the verdict program is attached here
//
// A promoted pair enters peers first, both sockets, and only then watch, backend first. The
// verdict runs on every socket in a map that carries it, so a single map would run it on the
// first socket of a pair before its peer is there to receive: its bytes would be dropped.
// peers gives each socket its kernel state (a psock) without a verdict, so by the time
// either socket's bytes are judged, both are redirect targets.
//
// The program, written with the asm package so that no C toolchain is needed to build:
//
//	if skb->len == 0 { return SK_DROP }     // a bare FIN: the loop passes it on with shutdown
//	key := bpf_get_socket_cookie(skb)
//	return bpf_sk_redirect_hash(skb, &peers, &key, 0)   // out of the peer; SK_DROP if none
//
// Closing a socket takes it out of both maps, so the maps empty as connections end.
type sockmapKernel struct {
	peers, watch *ebpf.Map
	prog         *ebpf.Program
	inKernel     atomic.Int64 // promoted connections not yet stopped
	promotions   atomic.Int64 // connections ever promoted
	paused       atomic.Int64 // directions ever taken out of the kernel for back-pressure
	// refuseClient makes every client's insertion fail as a FIN arriving during it does: for
	// the tests of a pair that joins by halves. Set before the loops start; read only.
	refuseClient bool
}

// DefaultSockmapConns is how many connections the sockmap mover can hold in the kernel at
// once when --max-conns sets no cap; the rest stay on the relay.
const DefaultSockmapConns = 32768

// loadSockmapKernel creates the maps, each with room for both sockets of conns connections,
// loads the verdict program and attaches it.
func loadSockmapKernel(conns int) (*sockmapKernel, error) {
	if conns <= 0 {
		conns = DefaultSockmapConns
	}
	k := &sockmapKernel{}
	var err error
	if k.peers, err = newSockHash("fulcrum_peers", 2*conns); err != nil {
		return nil, err
	}
	if k.watch, err = newSockHash("fulcrum_watch", 2*conns); err != nil {
		k.close()
		return nil, err
	}
	if k.prog, err = redirectProgram(k.peers); err != nil {
		k.close()
		return nil, err
	}
	err = link.RawAttachProgram(link.RawAttachProgramOptions{
		Target: k.watch.FD(), Program: k.prog, Attach: ebpf.AttachSkSKBStreamVerdict,
	})
	if err != nil {
		k.close()
		return nil, sockmapRefusal("attach the BPF stream verdict program", err)
	}
	return k, nil
}

func newSockHash(name string, entries int) (*ebpf.Map, error) {
	m, err := ebpf.NewMap(&ebpf.MapSpec{
		Name: name, Type: ebpf.SockHash, KeySize: 8, ValueSize: 8, MaxEntries: uint32(entries),
	})
	if err != nil {
		return nil, sockmapRefusal("create a BPF socket map", err)
	}
	return m, nil
}

// redirectProgram assembles and loads the verdict program over the peers map.
func redirectProgram(peers *ebpf.Map) (*ebpf.Program, error) {
	const skDrop = 0
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),              // keep skb across calls
		asm.LoadMem(asm.R2, asm.R1, 0, asm.Word), // skb->len (first field of __sk_buff)
		asm.JEq.Imm(asm.R2, 0, "bare_fin"),
		asm.FnGetSocketCookie.Call(),
		asm.StoreMem(asm.RFP, -8, asm.R0, asm.DWord), // the key lives on the stack
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.LoadMapPtr(asm.R2, peers.FD()),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, -8),
		asm.Mov.Imm(asm.R4, 0), // 0: out of the peer, not into its receive queue
		asm.FnSkRedirectHash.Call(),
		asm.Return(),
		asm.Mov.Imm(asm.R0, skDrop).WithSymbol("bare_fin"),
		asm.Return(),
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "fulcrum_verdict", Type: ebpf.SkSKB, License: "Dual MIT/GPL", Instructions: insns,
	})
	if err != nil {
		return nil, sockmapRefusal("load the BPF stream verdict program", err)
	}
	return prog, nil
}

// sockmapRefusal says in one line what the system lacks for the sockmap mover.
func sockmapRefusal(step string, err error) error {
	switch {
	case errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES):
		return fmt.Errorf("cannot %s: needs root, or CAP_BPF and CAP_NET_ADMIN", step)
	case errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS):
		return fmt.Errorf("cannot %s: this kernel lacks BPF sockmap support (needs Linux 5.10 or later built with CONFIG_BPF_SYSCALL and CONFIG_NET_SOCK_MSG)", step)
	}
	return fmt.Errorf("cannot %s: %w", step, err)
}

// mapPair is one connection's entries in the kernel maps: each socket's cookie (its key) and
// descriptor (a value). The map calls read keys and values in place through pointers,
// which keeps them from allocating (a uint64 passed as a key is boxed and copied): each loop
// keeps one (loop.entry) and writes it just before the calls.
type mapPair struct{ client, backend, cfd, bfd uint64 }

// insert puts a connected pair in the kernel: both in peers, then backend and client in
// watch. joined is false, with the maps as they were, when the pair stays on the relay (a
// map full, a socket no longer ESTABLISHED). clientOut is true when all went in but the
// client's verdict: the kernel moves the backend's bytes, and the client's stay for the
// loop to relay (a FIN that came in between makes the client CLOSE_WAIT, which a map
// refuses; the backend is judged already, so the pair cannot go back).
func (k *sockmapKernel) insert(p *mapPair) (joined, clientOut bool) {
	client, backend := unsafe.Pointer(&p.client), unsafe.Pointer(&p.backend)
	cfd, bfd := unsafe.Pointer(&p.cfd), unsafe.Pointer(&p.bfd)
	if k.peers.Update(client, bfd, ebpf.UpdateNoExist) != nil {
		return false, false
	}
	if k.peers.Update(backend, cfd, ebpf.UpdateNoExist) != nil {
		k.peers.Delete(client)
		return false, false
	}
	if k.watch.Update(backend, bfd, ebpf.UpdateNoExist) != nil {
		k.peers.Delete(client)
		k.peers.Delete(backend)
		return false, false
	}
	if k.refuseClient {
		return true, true
	}
	return true, k.watch.Update(client, cfd, ebpf.UpdateNoExist) != nil
}

// entries counts the sockets in both maps (for tests and status; it walks the maps).
func (k *sockmapKernel) entries() int {
	n := 0
	for _, m := range [2]*ebpf.Map{k.peers, k.watch} {
		var key, v uint64
		for it := m.Iterate(); it.Next(&key, &v); {
			n++
		}
	}
	return n
}

// close detaches the program and closes the maps; safe on a partly loaded or nil kernel.
func (k *sockmapKernel) close() {
	if k == nil {
		return
	}
	if k.prog != nil && k.watch != nil {
		link.RawDetachProgram(link.RawDetachProgramOptions{
			Target: k.watch.FD(), Program: k.prog, Attach: ebpf.AttachSkSKBStreamVerdict,
		})
	}
	if k.prog != nil {
		k.prog.Close()
	}
	for _, m := range [2]*ebpf.Map{k.watch, k.peers} {
		if m != nil {
			m.Close()
		}
	}
}
