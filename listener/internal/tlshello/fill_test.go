package tlshello

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// loopbackPair is a connected pair of TCP sockets on 127.0.0.1: the client end and the end a
// balancer would have accepted.
func loopbackPair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func TestFillOneByteWritesOverSocket(t *testing.T) {
	data := realHellos(t)["chromium"]
	client, server := loopbackPair(t)
	client.SetNoDelay(true)
	errc := make(chan error, 1)
	go func() { // ends when every byte is written or a write fails
		for i := range data {
			if _, err := client.Write(data[i : i+1]); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	server.SetReadDeadline(time.Now().Add(30 * time.Second))
	var r Reader
	st, err := r.Fill(server)
	if err != nil || st != Done {
		t.Fatalf("status %v, err %v", st, err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	checkDone(t, &r, data, "a.test")
}

func TestFillDeadlineOnASlowHello(t *testing.T) {
	client, server := loopbackPair(t)
	if _, err := client.Write([]byte{recordHandshake, 3, 1}); err != nil {
		t.Fatal(err)
	}
	server.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	var r Reader
	st, err := r.Fill(server)
	if st != NeedMore || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("status %v, err %v: want need_more and the deadline", st, err)
	}
	if len(r.Bytes()) != 3 {
		t.Errorf("read %d bytes, want the 3 sent", len(r.Bytes()))
	}
}
