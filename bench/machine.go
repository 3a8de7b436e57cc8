package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// The whole machine's figures: CPU from /proc/stat and kernel memory from /proc/meminfo. They
// count everything that runs (the load generator, the backends, the balancer, the kernel's
// softirq work on their behalf, and anything else on the machine), so they are only as good
// as the machine is quiet; direct, run in the same rounds, is their baseline.

// parseMachineCPU reads the busy time of all CPUs together from the text of /proc/stat: the
// first line, "cpu user nice system idle iowait irq softirq steal guest guest_nice", in USER_HZ
// ticks. Busy is everything but idle and iowait; guest time is already inside user and nice.
func parseMachineCPU(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "cpu" {
			continue
		}
		if len(f) < 8 {
			return 0, fmt.Errorf("bench: /proc/stat: %d fields on the cpu line, want at least 8", len(f))
		}
		var busy int64
		for i, name := range []string{"user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"} {
			if i+1 >= len(f) {
				break
			}
			n, err := strconv.ParseInt(f[i+1], 10, 64)
			if err != nil || n < 0 || n > maxTicks {
				return 0, fmt.Errorf("bench: /proc/stat %s: %q is not a tick count", name, f[i+1])
			}
			if name != "idle" && name != "iowait" {
				busy += n
			}
		}
		return busy, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("bench: /proc/stat: %w", err)
	}
	return 0, errors.New("bench: /proc/stat: no cpu line")
}

// maxTicks bounds one /proc/stat figure so that their sum cannot overflow: centuries of
// ticks on thousands of CPUs.
const maxTicks = 1 << 55

// machineCPU is the CPU time every CPU of the machine has been busy so far.
func machineCPU() (time.Duration, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("bench: machine cpu: %w", err)
	}
	defer f.Close()
	n, err := parseMachineCPU(f)
	return ticks(n), err
}

// slabInfo is the kernel's slab memory from /proc/meminfo, in bytes.
type slabInfo struct {
	slab, reclaimable, unreclaimable int64
}

// parseMeminfoSlab reads Slab, SReclaimable and SUnreclaim ("Slab:  123456 kB") from the text
// of /proc/meminfo.
func parseMeminfoSlab(r io.Reader) (slabInfo, error) {
	var s slabInfo
	want := map[string]*int64{"Slab": &s.slab, "SReclaimable": &s.reclaimable, "SUnreclaim": &s.unreclaimable}
	found := 0
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		dst := want[key]
		if !ok || dst == nil {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return slabInfo{}, fmt.Errorf("bench: /proc/meminfo %s: %q is not a size in kB", key, strings.TrimSpace(rest))
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb < 0 {
			return slabInfo{}, fmt.Errorf("bench: /proc/meminfo %s: %q is not a size in kB", key, f[0])
		}
		*dst = kb << 10
		found++
	}
	if err := sc.Err(); err != nil {
		return slabInfo{}, fmt.Errorf("bench: /proc/meminfo: %w", err)
	}
	if found < len(want) {
		return slabInfo{}, errors.New("bench: /proc/meminfo: no Slab, SReclaimable or SUnreclaim line")
	}
	return s, nil
}

// machineSlab is the kernel's slab memory now.
func machineSlab() (slabInfo, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return slabInfo{}, fmt.Errorf("bench: slab: %w", err)
	}
	defer f.Close()
	return parseMeminfoSlab(f)
}

// addSlabPerConn writes the growth of the kernel's slab from before to after, per held
// connection, into metrics: kernel_slab_per_conn_kib (Slab: SReclaimable + SUnreclaim) and
// kernel_sunreclaim_per_conn_kib. Slab, not SUnreclaim alone: a socket's inode and dentry
// sit in reclaimable caches (sock_inode_cache, dentry) yet cannot be reclaimed while the
// socket is open, and the TCP socket itself sits in an unreclaimable one.
func addSlabPerConn(metrics map[string]float64, before, after slabInfo, held int) {
	if held <= 0 {
		return
	}
	n := float64(held) * 1024
	metrics["kernel_slab_per_conn_kib"] = float64(after.slab-before.slab) / n
	metrics["kernel_sunreclaim_per_conn_kib"] = float64(after.unreclaimable-before.unreclaimable) / n
}
