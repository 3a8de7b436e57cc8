// Package testbed is what the tests of fulcrum's packages share: loopback backends that count
// what they accept and stop everything they started, helper processes (the test binary run
// again in a role), and polling with a deadline instead of sleeps. Only tests import it.
//
//	be := testbed.Serve(t, func(c net.Conn) error { _, err := io.Copy(c, c); return err })
//	// ... dial through the balancer to be.Addr() ...
//	testbed.Eventually(t, 10*time.Second, "one connection served", func() bool { return be.Served() == 1 })
//
//	ch := testbed.StartChild(t, []string{"ROLE=backends"}, "-test.run=^$") // TestMain serves the role
//	addr := ch.Line(t, "ADDR ")
//
// Everything it starts ends at the test's cleanup: listeners and connections closed,
// goroutines waited for, children stopped.
package testbed
