package tlshello

import "encoding/binary"

const (
	// MaxHello is the largest ClientHello body accepted, in bytes (its handshake length field):
	// 16 KiB leaves room for post-quantum key shares several times over.
	MaxHello = 16 << 10
	// MaxRecords is how many TLS records a hello may be split over. Real clients use one or
	// two; the cap bounds the record headers the buffer must hold.
	MaxRecords = 64
	// BufferSize is the buffer a Reader needs for the largest hello it accepts: the handshake
	// message (4-byte header and body) and MaxRecords record headers.
	BufferSize = handshakeHeaderLen + MaxHello + MaxRecords*recordHeaderLen

	// ReasonMalformed: a record or the hello does not parse, or a handshake message other
	// than a ClientHello came first.
	ReasonMalformed = "malformed"
	// ReasonTooLarge: the hello is longer than MaxHello, a record longer than TLS allows, or
	// the hello does not fit the buffer.
	ReasonTooLarge = "too_large"
)

const (
	recordHeaderLen    = 5
	handshakeHeaderLen = 4
	maxRecordPayload   = 1 << 14 // TLS: a plaintext record carries at most 2^14 bytes
	recordHandshake    = 0x16
	typeClientHello    = 0x01
)

// Status is what Advance knows so far.
type Status uint8

const (
	NeedMore Status = iota // the hello is not complete yet
	Done                   // the hello is complete and parsed: see ServerName
	NotTLS                 // the first byte does not open a TLS handshake record
	Refused                // see Reason
)

func (s Status) String() string {
	switch s {
	case NeedMore:
		return "need_more"
	case Done:
		return "done"
	case NotTLS:
		return "not_tls"
	case Refused:
		return "refused"
	}
	return "unknown"
}

// Reader reassembles one ClientHello in a fixed buffer. Its zero value makes its own buffer
// of BufferSize bytes on first use; Reset gives it one the caller owns (from a pool, say).
// A Reader serves one connection at a time and is not safe for concurrent use.
type Reader struct {
	buf     []byte // the caller's bytes, as read: never reordered once Advance returns
	n       int    // bytes of buf filled
	next    int    // offset of the next record header not yet walked
	payload int    // handshake bytes in the records walked so far
	records int    // records walked
	hsHdr   [handshakeHeaderLen]byte
	hsLen   int // body length from the handshake header, once payload >= 4
	status  Status
	reason  string
	nameLen int
	name    [maxNameLen]byte
	hdrs    [MaxRecords][recordHeaderLen]byte // headers of the walked records, to restore the buffer after a parse
}

// Reset makes r ready for a new connection, reading into buf (at most BufferSize bytes of it
// are used). A buffer shorter than BufferSize lowers the largest hello accepted. buf nil: r
// keeps the buffer it had, or makes one on first use.
func (r *Reader) Reset(buf []byte) {
	if buf == nil {
		buf = r.buf
	}
	*r = Reader{buf: buf[:min(len(buf), BufferSize)]}
}

// Free is the part of the buffer not yet filled: read into it, then call Advance with the
// count. It is empty once the outcome is known.
func (r *Reader) Free() []byte {
	if r.buf == nil {
		r.buf = make([]byte, BufferSize)
	}
	if r.status != NeedMore {
		return nil
	}
	return r.buf[r.n:]
}

// Bytes is every byte read so far, unchanged: what the caller sends to the backend first.
func (r *Reader) Bytes() []byte { return r.buf[:r.n] }

// HelloLen is the length of the records that carry the hello, once Done; Bytes may hold more
// (what the client sent after its hello in the same reads).
func (r *Reader) HelloLen() int {
	if r.status != Done {
		return 0
	}
	return r.next
}

// ServerName is the host name the hello asked for, once Done: "" when it names none. It is
// a slice of the Reader's own array, valid until Reset; it is never lowercased.
func (r *Reader) ServerName() []byte { return r.name[:r.nameLen] }

// Status is the last outcome of Advance.
func (r *Reader) Status() Status { return r.status }

// Reason says why the hello was refused: ReasonMalformed or ReasonTooLarge ("" unless Refused).
func (r *Reader) Reason() string { return r.reason }

// Advance takes n more bytes, just read into Free, and says what is known. Once the outcome
// is not NeedMore it stays, and Advance returns it again.
func (r *Reader) Advance(n int) Status {
	if r.status != NeedMore || n <= 0 || len(r.buf) == 0 {
		return r.status
	}
	r.n += min(n, len(r.buf)-r.n)
	if r.buf[0] != recordHandshake {
		r.status = NotTLS
		return r.status
	}
	for r.status == NeedMore {
		if !r.walkRecord() {
			break
		}
	}
	if r.status == NeedMore && r.n == len(r.buf) {
		r.refuse(ReasonTooLarge)
	}
	return r.status
}

// walkRecord checks the record at r.next and, when all of it is in, takes its payload. It
// returns false when it needs more bytes or has decided the outcome.
func (r *Reader) walkRecord() bool {
	if r.n-r.next < recordHeaderLen {
		return false
	}
	h := r.buf[r.next : r.next+recordHeaderLen]
	length := int(binary.BigEndian.Uint16(h[3:]))
	switch {
	case h[0] != recordHandshake || h[1] != 3 || length == 0:
		return r.refuse(ReasonMalformed)
	case length > maxRecordPayload || r.records == MaxRecords || r.next+recordHeaderLen+length > len(r.buf):
		return r.refuse(ReasonTooLarge)
	case r.n-r.next < recordHeaderLen+length:
		return false
	}
	r.hdrs[r.records] = [recordHeaderLen]byte(h)
	r.takePayload(r.buf[r.next+recordHeaderLen : r.next+recordHeaderLen+length])
	r.records++
	r.next += recordHeaderLen + length
	return r.checkHandshake()
}

// takePayload counts a record's payload and keeps the handshake header's bytes, which may
// arrive split over several records.
func (r *Reader) takePayload(p []byte) {
	for i := 0; r.payload+i < handshakeHeaderLen && i < len(p); i++ {
		r.hsHdr[r.payload+i] = p[i]
	}
	r.payload += len(p)
}

// checkHandshake decides what the payload walked so far allows: more records, a parse, or a
// refusal. The hello must end with its record: nothing may follow it there (TLS 1.3 requires
// it, and no earlier version sends anything after a ClientHello before the server answers).
func (r *Reader) checkHandshake() bool {
	if r.payload < handshakeHeaderLen {
		return true
	}
	if r.hsHdr[0] != typeClientHello {
		return r.refuse(ReasonMalformed)
	}
	r.hsLen = int(r.hsHdr[1])<<16 | int(r.hsHdr[2])<<8 | int(r.hsHdr[3])
	total := handshakeHeaderLen + r.hsLen
	switch {
	case r.hsLen > MaxHello:
		return r.refuse(ReasonTooLarge)
	case r.payload > total:
		return r.refuse(ReasonMalformed)
	case r.payload < total:
		return true
	}
	r.parse()
	return false
}

func (r *Reader) refuse(reason string) bool {
	r.status, r.reason = Refused, reason
	return false
}
