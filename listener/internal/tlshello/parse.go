package tlshello

import (
	"encoding/binary"

	"golang.org/x/crypto/cryptobyte"
)

const (
	extServerName = 0    // RFC 6066 server_name
	nameTypeHost  = 0    // host_name, the only type defined
	maxNameLen    = 255  // a DNS name is at most 253 characters (255 octets on the wire)
	minNameByte   = 0x21 // a host name is printable ASCII (IDNs travel as punycode)
	maxNameByte   = 0x7e //
)

// parse reads the complete hello: all its records are in buf[:r.next]. A hello over several
// records is first gathered in place (record headers taken out, so the handshake message is
// one slice for cryptobyte) and put back as it was afterwards: Bytes is what the client sent.
func (r *Reader) parse() {
	msg := r.gather()
	ok := r.parseHello(msg)
	r.scatter()
	if !ok {
		r.refuse(ReasonMalformed)
		return
	}
	r.status = Done
}

// gather moves the payloads of records 2..n next to that of record 1 and returns the
// handshake message they form. The headers are kept in r.hdrs.
func (r *Reader) gather() []byte {
	dst := recordHeaderLen + recordLen(r.hdrs[0])
	src := dst
	for i := 1; i < r.records; i++ {
		l := recordLen(r.hdrs[i])
		src += recordHeaderLen
		copy(r.buf[dst:], r.buf[src:src+l])
		dst += l
		src += l
	}
	return r.buf[recordHeaderLen:dst]
}

// scatter undoes gather, last record first so that no payload overwrites one not yet moved.
func (r *Reader) scatter() {
	src := recordHeaderLen + r.payload // end of the gathered payloads
	end := r.next                      // end of the records as sent
	for i := r.records - 1; i >= 1; i-- {
		l := recordLen(r.hdrs[i])
		src -= l
		end -= l
		copy(r.buf[end:end+l], r.buf[src:src+l])
		end -= recordHeaderLen
		copy(r.buf[end:], r.hdrs[i][:])
	}
}

func recordLen(h [recordHeaderLen]byte) int { return int(binary.BigEndian.Uint16(h[3:])) }

// parseHello reads a ClientHello message (RFC 8446 4.1.2; earlier versions have the same
// shape, extensions optional) and keeps its host name. It reports whether the message parses.
func (r *Reader) parseHello(msg []byte) bool {
	s := cryptobyte.String(msg)
	var body, sessionID, suites, compression cryptobyte.String
	var hsType uint8
	var version uint16
	if !s.ReadUint8(&hsType) || !s.ReadUint24LengthPrefixed(&body) || !s.Empty() ||
		!body.ReadUint16(&version) || !body.Skip(32) || // legacy_version, random
		!body.ReadUint8LengthPrefixed(&sessionID) || len(sessionID) > 32 ||
		!body.ReadUint16LengthPrefixed(&suites) || len(suites) < 2 || len(suites)%2 != 0 ||
		!body.ReadUint8LengthPrefixed(&compression) || len(compression) < 1 {
		return false
	}
	if body.Empty() {
		return true // a hello without extensions names no server
	}
	var exts cryptobyte.String
	if !body.ReadUint16LengthPrefixed(&exts) || !body.Empty() {
		return false
	}
	return r.readExtensions(exts)
}

// readExtensions walks the extensions and reads server_name, which may appear once.
func (r *Reader) readExtensions(exts cryptobyte.String) bool {
	seen := false
	for !exts.Empty() {
		var typ uint16
		var data cryptobyte.String
		if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&data) {
			return false
		}
		if typ != extServerName {
			continue
		}
		if seen || !r.readServerName(data) {
			return false
		}
		seen = true
	}
	return true
}

// readServerName reads a server_name extension (RFC 6066 3): a list of names, of which the
// host_name is the one to keep. An empty extension (a server's echo) names nothing.
func (r *Reader) readServerName(data cryptobyte.String) bool {
	if data.Empty() {
		return true
	}
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) || !data.Empty() || list.Empty() {
		return false
	}
	for !list.Empty() {
		var typ uint8
		var name cryptobyte.String
		if !list.ReadUint8(&typ) || !list.ReadUint16LengthPrefixed(&name) || len(name) == 0 {
			return false
		}
		if typ != nameTypeHost {
			continue
		}
		if r.nameLen != 0 || !validName(name) {
			return false
		}
		r.nameLen = copy(r.name[:], name)
	}
	return true
}

// validName: a host name to route by and to log is at most maxNameLen printable ASCII bytes.
func validName(name []byte) bool {
	if len(name) > maxNameLen {
		return false
	}
	for _, c := range name {
		if c < minNameByte || c > maxNameByte {
			return false
		}
	}
	return true
}
