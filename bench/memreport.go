package bench

import (
	"fmt"
	"strings"
)

// kernelMemoryTable sets each peer's kernel memory per held connection (the growth of the
// machine's slab over idle's open phase) beside its user-space memory: one row per peer that
// reported it, with the figure net of direct's (the client's and the backends' own sockets,
// which every peer shares) and the balancer's total (net slab + RSS).
func (r *Report) kernelMemoryTable() [][]string {
	const slab, rss = "kernel_slab_per_conn_kib", "rss_per_conn_kib"
	rows := [][]string{{"peer", "slab per connection (KiB)", "minus direct's (KiB)", "user-space RSS per connection (KiB)", "balancer total (KiB)"}}
	base, hasBase := r.Median(Idle, Direct, slab)
	for _, t := range r.Targets {
		k, ok := r.Median(Idle, t, slab)
		if !ok {
			continue
		}
		row := []string{t, r.spreadCell(Idle, t, slab), "–", r.cell(Idle, t, rss), "–"}
		if hasBase && t != Direct {
			row[2] = formatValue(k - base)
			if u, ok := r.Median(Idle, t, rss); ok {
				row[4] = formatValue(k - base + u)
			}
		}
		rows = append(rows, row)
	}
	return rows
}

// writeKernelMemory writes kernelMemoryTable with its method and limits.
func (r *Report) writeKernelMemory(b *strings.Builder) {
	if !writeSection(b, "Kernel memory per held connection",
		"The growth of the machine's slab (`/proc/meminfo` Slab = SReclaimable + SUnreclaim) while idle opens and holds its "+
			"connections, divided by the connections held. Slab rather than SUnreclaim alone: a TCP socket sits in an "+
			"unreclaimable cache, but its inode and dentry sit in reclaimable ones (sock_inode_cache, dentry) that cannot be "+
			"freed while the socket is open. Limits: it is the whole machine's slab, so anything else allocating or freeing "+
			"kernel objects meanwhile (other processes, TIME_WAIT sockets of earlier loads expiring, caches shrinking) moves it; "+
			"held sockets queue no data, so socket buffers (outside the slab) are not counted; and direct holds the client's "+
			"and the backends' sockets alone, so a peer's figure minus direct's is the balancer's own two sockets (and "+
			"whatever else it keeps in the kernel per connection, such as sockmap entries). Median (lowest–highest) over the rounds.", r.kernelMemoryTable()) {
		return
	}
	if _, ok := r.Median(Idle, Direct, "kernel_slab_per_conn_kib"); !ok {
		fmt.Fprintf(b, "\ndirect did not run idle: no baseline to subtract.\n")
	}
}
