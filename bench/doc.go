// Package bench measures a TCP balancer from the outside: it starts its own backends, points
// bounded loads at a target (a balancer in front of those backends, or one backend directly)
// and reports what it saw.
//
//	bs, _ := bench.StartBackends(4, nil)      // echo / sink / source / hold servers
//	defer bs.Close()
//	r := &bench.Runner{Backends: bs, Target: bench.Target{Name: "fulcrum", Addr: lbAddr}}
//	res, err := r.Run(ctx, bench.Throughput)  // or Connrate, Latency, Idle, Balance
//
// Scenarios:
//   - throughput: Conns connections stream bulk data for Duration, upload then download; MB/s.
//   - connrate: Conns workers loop connect → 64-byte request → 64-byte reply → close;
//     connections/s and p50/p99/p99.9 of the whole transaction.
//   - latency: Conns persistent connections ping-pong 64-byte messages; requests/s and
//     percentiles.
//   - idle: Hold connections opened and held; the time to open them and the balancer's RSS
//     growth per connection (only when the balancer is a process of its own, Target.PID).
//   - balance: Hold connections held across the backends; max - min of what the backends saw
//     and whether the balancer's own counts (Target.Counts) agree.
//
// Every connection starts with one mode byte that tells the backend what to do (see Mode*),
// so one set of backends serves every scenario and every balancer in front of them. Every
// load runs on loopback and ends by itself: each socket operation has a deadline.
//
// Compare runs every scenario against direct, fulcrum, HAProxy and nginx in interleaved
// rounds and writes medians, ratios and a chart. The package does not tune the kernel, does
// not assert performance, and does not load anything but loopback addresses.
package bench
