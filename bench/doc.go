// Package bench measures a TCP balancer from the outside: it starts its own backends, points
// bounded loads at a target (a balancer in front of those backends, or one backend directly)
// and reports what it saw, including what the balancer's processes spent in CPU.
//
//	bs, _ := bench.StartBackends(4, nil)      // echo / request / sink / source / hold servers
//	defer bs.Close()
//	r := &bench.Runner{Backends: bs, Target: bench.Target{Name: "fulcrum", Addr: lbAddr, PID: lbPID}}
//	res, err := r.Run(ctx, bench.Connrate)    // or Throughput, Latency, Latency1, Idle, Balance
//
// Scenarios:
//   - throughput: Conns connections stream bulk data for Duration, upload then download; MB/s.
//   - connrate: Workers clients loop connect → 80-byte request → 64-byte reply → the server's
//     FIN → close; connections/s and p50/p99/p99.9 of the whole transaction.
//   - latency: PingConns persistent connections ping-pong 64-byte messages; requests/s and
//     percentiles. latency1: the same over one connection.
//   - idle: Hold connections opened and held; the time to open them and the balancer's RSS
//     growth per connection (only when the balancer is a process of its own, Target.PID).
//   - balance: Hold connections held across the backends; max - min of what the backends saw
//     and whether the balancer's own counts (Target.Counts) agree.
//
// connrate and latency run on a light client: one epoll loop per OS thread over raw
// non-blocking sockets, so the load generator leaves the CPU to the balancer. Every timed
// scenario reads utime + stime of the balancer's process tree (Target.PID) from /proc at both
// ends of its measured window and reports µs of CPU per connection, request or MB, and the
// shares of a core the balancer, the client and the backends used.
//
// Every connection starts with one mode byte that tells the backend what to do (see Mode*),
// so one set of backends serves every scenario and every balancer in front of them. Every
// load runs on loopback and ends by itself: each socket operation has a deadline.
//
// Every timed scenario also reads the whole machine's busy CPU from /proc/stat over the same
// window (machine_cpu_*, for direct too), and idle reads the growth of the kernel's slab from
// /proc/meminfo per held connection (kernel_slab_per_conn_kib): whole-machine figures, only as
// good as the machine is quiet, with direct as their baseline.
//
// Compare runs every scenario against direct, fulcrum (and its variants fulcrum-goroutine,
// fulcrum-sockmap and fulcrum-nometrics: fulcrum with one serve flag appended), the yardstick
// (a bare event-loop balancer kept outside the repository, run from its binary or built from
// its folder: CompareConfig.Yardstick), HAProxy and nginx in interleaved rounds and writes
// medians, ratios and the CPU with its spread as Markdown, and the report as JSON for the chart (package bench/chart, drawn by the
// fulcrum-chart command, so that the balancer does not link a plotting library). RunReal runs real clients (wrk, redis-benchmark, pgbench) through fulcrum and
// HAProxy in front of two real servers each. The package does not tune the kernel, does not
// install anything, does not assert performance, and does not load anything but loopback
// addresses.
//
// RunManyBackends registers tens of thousands of backends with fulcrum by heartbeat, with
// metrics on and off, and reports heartbeats/s, CPU per heartbeat, RSS per backend and what
// one /metrics scrape costs.
package bench
