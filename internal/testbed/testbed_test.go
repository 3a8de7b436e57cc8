package testbed

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv("TESTBED_ROLE") == "echo" {
		echoLines()
		return
	}
	goleak.VerifyTestMain(m)
}

// echoLines is the helper process: "READY", then "GOT " and each line of its stdin.
func echoLines() {
	fmt.Println("READY")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		fmt.Println("GOT " + sc.Text())
	}
	os.Exit(0)
}

// TestBackendCountsAndStops: every accepted connection is counted, a handler's nil counts as
// served, and Stop ends a handler blocked on an open connection.
func TestBackendCountsAndStops(t *testing.T) {
	b := Serve(t, func(c net.Conn) error {
		line, err := bufio.NewReader(c).ReadString('\n')
		if line != "ok\n" {
			return errors.New("not ok")
		}
		return err
	})
	for _, msg := range []string{"ok\n", "no\n"} {
		c, err := net.Dial("tcp", b.Addr())
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, msg)
		c.Close()
	}
	held, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	Eventually(t, 10*time.Second, "three accepted, one still open", func() bool { return b.Accepted() == 3 && b.Open() == 1 })
	b.Stop()
	b.Stop()
	if b.Served() != 1 || b.Open() != 0 {
		t.Fatalf("served %d, open %d after Stop; want 1, 0", b.Served(), b.Open())
	}
	if _, err := net.Dial("tcp", b.Addr()); err == nil {
		t.Fatal("the backend still accepts after Stop")
	}
}

// TestChild: a child answers by lines, ends when its stdin closes, and Kill ends it at once
// without failing the test.
func TestChild(t *testing.T) {
	ch := StartChild(t, []string{"TESTBED_ROLE=echo"}, "-test.run=^$")
	ch.Line(t, "READY")
	fmt.Fprintln(ch.In(), "hello")
	if got := ch.Line(t, "GOT "); got != "hello" {
		t.Fatalf("child answered %q", got)
	}
	ch.Stop()
	ch.Stop()

	killed := StartChild(t, []string{"TESTBED_ROLE=echo"}, "-test.run=^$")
	killed.Line(t, "READY")
	killed.Kill()
}

// TestVariants: each variant runs as its own subtest, and Of finds it from the subtest and
// from subtests below it, never from outside.
func TestVariants(t *testing.T) {
	type plane string
	var vs Variants[plane]
	var ran []plane
	vs.Each(t, []plane{"goroutine", "epoll"}, func(t *testing.T) {
		p, ok := vs.Of(t)
		if !ok || t.Name() != "TestVariants/"+string(p) {
			t.Fatalf("Of(%s) = %q, %v", t.Name(), p, ok)
		}
		t.Run("inner/epoll-looking", func(t *testing.T) {
			if q, ok := vs.Of(t); !ok || q != p {
				t.Errorf("Of(%s) = %q, %v; want %q", t.Name(), q, ok, p)
			}
		})
		ran = append(ran, p)
	})
	if len(ran) != 2 || ran[0] != "goroutine" || ran[1] != "epoll" {
		t.Fatalf("ran %q", ran)
	}
	if p, ok := vs.Of(t); ok {
		t.Fatalf("Of outside Each = %q", p)
	}
}
