package tlshello

import (
	"errors"
	"fmt"
	"io"
)

// Fill reads from src (a client connection whose read deadline the caller has set) until the
// outcome is known, and returns it. The error is src's (a timeout: the caller counts
// "timeout"), or io.ErrUnexpectedEOF when the client ended before its hello was whole; the
// status is then NeedMore. Bytes holds what was read in every case.
func (r *Reader) Fill(src io.Reader) (Status, error) {
	for {
		free := r.Free()
		if len(free) == 0 {
			return r.status, nil
		}
		n, err := src.Read(free)
		if st := r.Advance(n); st != NeedMore {
			return st, nil
		}
		switch {
		case errors.Is(err, io.EOF):
			return NeedMore, io.ErrUnexpectedEOF
		case err != nil:
			return NeedMore, fmt.Errorf("tlshello: read hello: %w", err)
		}
	}
}
