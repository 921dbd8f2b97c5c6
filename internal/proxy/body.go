package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sync"
)

var bodyPool = sync.Pool{New: func() any { return new(bodyStream) }}

// maxTrailerBytes bounds the trailer section of a chunked upstream body; we
// read and drop trailers, since fasthttp cannot relay them on a stream.
const maxTrailerBytes = 64 << 10

// bodyStream relays an upstream response body that is too large or too
// open-ended to buffer. fasthttp reads it while writing the response and
// closes it when done; Close hands the connection back if the body was read
// to its end and ends the exchange.
type bodyStream struct {
	c      *conn
	u      *Upstream
	br     *bufio.Reader
	done   Done
	status int
	now    int64

	left       int64 // bytes left in a fixed body, or in the current chunk
	chunked    bool
	untilClose bool
	eof        bool
	reuse      bool
	err        error
}

func (s *bodyStream) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	if s.eof {
		return 0, io.EOF
	}
	n, err := s.read(p)
	if err != nil && err != io.EOF {
		s.err = upstreamErr("read response body", err)
		return n, s.err
	}
	return n, err
}

func (s *bodyStream) read(p []byte) (int, error) {
	switch {
	case s.untilClose:
		n, err := s.br.Read(p)
		if err == io.EOF {
			s.eof = true
		}
		return n, err
	case s.chunked:
		if s.left == 0 {
			size, err := readChunkSize(s.br)
			if err != nil {
				return 0, err
			}
			if size == 0 {
				if err := skipTrailers(s.br); err != nil {
					return 0, err
				}
				s.eof = true
				return 0, io.EOF
			}
			s.left = size
		}
		n, err := s.readLeft(p)
		if err == nil && s.left == 0 {
			err = readCRLF(s.br)
		}
		return n, err
	default:
		if s.left == 0 {
			s.eof = true
			return 0, io.EOF
		}
		n, err := s.readLeft(p)
		if err == nil && s.left == 0 {
			s.eof = true
		}
		return n, err
	}
}

func (s *bodyStream) readLeft(p []byte) (int, error) {
	if int64(len(p)) > s.left {
		p = p[:s.left]
	}
	n, err := s.br.Read(p)
	s.left -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// Close ends the exchange. fasthttp calls it after writing the body, after a
// failed write, or when it drops the response.
func (s *bodyStream) Close() error {
	if s.c == nil {
		return nil
	}
	err := s.err
	if !s.eof && err == nil {
		err = errors.New("response body abandoned before its end")
	}
	if s.eof && s.reuse && s.err == nil {
		s.u.put(s.c, s.now)
	} else {
		s.c.close()
	}
	done, status := s.done, s.status
	*s = bodyStream{}
	bodyPool.Put(s)
	done.ExchangeDone(status, err)
	return nil
}

// readChunkSize reads a chunk-size line, ignoring chunk extensions.
func readChunkSize(br *bufio.Reader) (int64, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, fmt.Errorf("chunk size: %w", err)
	}
	var size int64
	digits := 0
	for _, b := range line {
		var v byte
		switch {
		case b >= '0' && b <= '9':
			v = b - '0'
		case b >= 'a' && b <= 'f':
			v = b - 'a' + 10
		case b >= 'A' && b <= 'F':
			v = b - 'A' + 10
		default:
			if digits == 0 || (b != ';' && b != '\r' && b != ' ' && b != '\t' && b != '\n') {
				return 0, errors.New("malformed chunk size")
			}
			return size, nil
		}
		digits++
		if digits > 15 {
			return 0, errors.New("chunk too large")
		}
		size = size<<4 | int64(v)
	}
	return 0, errors.New("malformed chunk size")
}

func readCRLF(br *bufio.Reader) error {
	b, err := br.ReadByte()
	if err == nil && b == '\r' {
		b, err = br.ReadByte()
	}
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	if b != '\n' {
		return errors.New("missing CRLF after chunk")
	}
	return nil
}

func skipTrailers(br *bufio.Reader) error {
	total := 0
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("trailers: %w", err)
		}
		total += len(line)
		if total > maxTrailerBytes {
			return errors.New("trailers too large")
		}
		if len(line) <= 2 && (len(line) == 1 || line[0] == '\r') {
			return nil
		}
	}
}
