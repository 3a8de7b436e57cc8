package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// heartbeatClient sends /upstream/add requests over one keep-alive HTTP/1.1 connection to a
// fulcrum admin API, reconnecting when the server closes it. A plain request writer keeps the
// load generator's own CPU small beside the balancer's. Not safe for concurrent use: each
// sender goroutine owns one.
type heartbeatClient struct {
	admin, token string
	conn         net.Conn
	br           *bufio.Reader
	buf          []byte
}

// backendAddr is the i-th registered backend: hosts 127.1.x.1, which the balancer never
// listens on, and ports from 1024 up, 60,000 per host. Nothing listens there: health checks
// are off, so the registry holds them all.
func backendAddr(i int) (host string, port int) {
	return "127.1." + strconv.Itoa(i/60000) + ".1", 1024 + i%60000
}

// add registers backend i, or renews its heartbeat: one request, one 200 reply.
func (hc *heartbeatClient) add(deadline time.Time) error {
	if hc.conn == nil {
		c, err := net.DialTimeout("tcp", hc.admin, 5*time.Second)
		if err != nil {
			return fmt.Errorf("heartbeat: %w", err)
		}
		hc.conn, hc.br = c, bufio.NewReader(c)
	}
	hc.conn.SetDeadline(deadline)
	if _, err := hc.conn.Write(hc.buf); err != nil {
		return hc.fail(err)
	}
	resp, err := http.ReadResponse(hc.br, nil)
	if err != nil {
		return hc.fail(err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return hc.fail(err)
	}
	if resp.Close {
		hc.close()
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("heartbeat: %s", resp.Status)
	}
	return nil
}

// request prepares the request for backend i in hc.buf.
func (hc *heartbeatClient) request(i int) {
	host, port := backendAddr(i)
	hc.buf = append(hc.buf[:0], "GET /upstream/add?host="...)
	hc.buf = append(hc.buf, host...)
	hc.buf = append(hc.buf, "&port="...)
	hc.buf = strconv.AppendInt(hc.buf, int64(port), 10)
	hc.buf = append(hc.buf, " HTTP/1.1\r\nHost: "...)
	hc.buf = append(hc.buf, hc.admin...)
	hc.buf = append(hc.buf, "\r\nAuthorization: Bearer "...)
	hc.buf = append(hc.buf, hc.token...)
	hc.buf = append(hc.buf, "\r\n\r\n"...)
}

func (hc *heartbeatClient) fail(err error) error {
	hc.close()
	return fmt.Errorf("heartbeat: %w", err)
}

func (hc *heartbeatClient) close() {
	if hc.conn != nil {
		hc.conn.Close()
		hc.conn, hc.br = nil, nil
	}
}

// heartbeatLoad is what one phase of heartbeats did.
type heartbeatLoad struct {
	done, errs int64
	firstErr   error
	secs       float64
}

// maxFailing is how many failed heartbeats in a row end a sender: the balancer is gone or
// refuses every request, and retrying at full speed would only spin.
const maxFailing = 50

// sendHeartbeats runs clients senders until next() says there is no more work (it returns
// the index of the backend to send, or false): each sender owns one heartbeatClient and ends
// with the work, at giveUp, or when ctx ends.
func sendHeartbeats(ctx context.Context, admin, token string, clients int, giveUp time.Time, next func() (int, bool)) heartbeatLoad {
	var (
		l     heartbeatLoad
		done  atomic.Int64
		mu    sync.Mutex // guards l.errs and l.firstErr
		wg    sync.WaitGroup
		start = time.Now()
	)
	for range clients {
		wg.Add(1)
		go func() { // heartbeatSender: ends when next() runs out, at giveUp or with ctx
			defer wg.Done()
			hc := &heartbeatClient{admin: admin, token: token}
			defer hc.close()
			failing := 0 // failures in a row: a sender gives up after maxFailing
			for ctx.Err() == nil && time.Now().Before(giveUp) && failing < maxFailing {
				i, ok := next()
				if !ok {
					return
				}
				hc.request(i)
				if err := hc.add(giveUp); err != nil {
					mu.Lock()
					l.errs++
					if l.firstErr == nil {
						l.firstErr = err
					}
					mu.Unlock()
					failing++
					continue
				}
				failing = 0
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	l.done, l.secs = done.Load(), time.Since(start).Seconds()
	return l
}
