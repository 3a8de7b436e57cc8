// Package tlshello reads a TLS ClientHello as it arrives, without answering anything, to learn
// the server name (SNI) a client asked for. fulcrum routes a connection by that name and then
// sends the very bytes read to the chosen backend first, unchanged, so the TLS session stays
// end to end: the package never decrypts and holds no certificate.
//
// A Reader owns one fixed buffer (BufferSize bytes: a 16 KiB hello plus the headers of its
// records) and nothing grows per byte received. Bytes go in through the buffer's free space;
// Advance says what is known so far:
//
//	NeedMore  the hello is not complete: read more into Free (a caller's deadline bounds the wait)
//	Done      ServerName is the name asked for ("" when the hello names none)
//	NotTLS    the first byte does not open a handshake record: route to the default
//	Refused   Reason is "malformed" or "too_large": close the client and count it
//
// In every outcome but Refused the caller forwards Bytes (everything read so far, the hello and
// whatever followed it in the same reads) to the backend before relaying the connection.
//
// On the event loops (non-blocking sockets) each readable event reads into Free and calls
// Advance; a timer owned by the loop bounds the whole hello (--client-hello-timeout, counted
// as "timeout"):
//
//	n, err := unix.Read(fd, r.Free())
//	if n > 0 { st = r.Advance(n) }
//
// A goroutine sets a deadline on its connection and calls Fill, which reads until Advance
// says something other than NeedMore:
//
//	conn.SetReadDeadline(time.Now().Add(helloTimeout))
//	st, err := r.Fill(conn) // err: a timeout, or the client ended before its hello was whole
//
// Records are walked as they complete; the hello is parsed once, when its last record is in,
// with golang.org/x/crypto/cryptobyte. The package does not check what a server would (cipher
// suites, key shares): a hello that parses and names a host is enough to route it.
package tlshello
