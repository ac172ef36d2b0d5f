package router

import (
	"bufio"
	"errors"
	"io"
	"net"
	"time"

	"github.com/valyala/fasthttp"
)

// maxBufferedResponse is the largest pod answer that passes through buffered: read whole before
// the router answers, which allocates nothing, where a streamed body costs allocations of its
// own. Larger answers, and those of unknown length (chunked, server-sent events, until the pod
// closes), stream as they come, so that a call holds at most twice this much of a body in memory
// (the pod's answer and the client's copy), about what nginx buffers of a proxied answer.
const maxBufferedResponse = 64 << 10

// maxInterimAnswers bounds the 1xx (informational) answers a pod may send before its answer.
const maxInterimAnswers = 100

// errTooManyInterim is a pod's answer that never got past its informational answers.
var errTooManyInterim = errors.New("more than 100 informational (1xx) answers")

// passTransport is the pass-through client's fasthttp.RoundTripper: fasthttp's own exchange on a
// pooled connection (write the request, read the answer's header) except that whether the body
// streams is decided once the header is read, by its length (maxBufferedResponse). fasthttp's
// transport, when the client streams answers (StreamResponseBody), streams every body, and pays
// four allocations per call to hand the connection over to the stream.
type passTransport struct{}

// RoundTrip sends req on one of hc's connections and reads the answer into resp; retry reports
// whether the request may be sent again on another connection (fasthttp.HostClient decides).
func (passTransport) RoundTrip(hc *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response) (retry bool, err error) {
	var deadline time.Time
	if t := req.GetTimeOut(); t > 0 {
		deadline = time.Now().Add(t)
	}
	cc, err := hc.AcquireConn(req.GetTimeOut(), req.ConnectionClose())
	if err != nil {
		return false, err
	}
	conn := cc.Conn()
	resp.ParseNetConn(conn)
	if err := conn.SetWriteDeadline(earliest(deadline, hc.WriteTimeout)); err != nil {
		hc.CloseConn(cc)
		return true, err
	}
	// A connection older than MaxConnDuration carries this request, saying it is its last.
	retiring := hc.MaxConnDuration > 0 && time.Since(cc.CreatedTime()) > hc.MaxConnDuration && !req.ConnectionClose()
	if retiring {
		req.SetConnectionClose()
	}
	bw := hc.AcquireWriter(conn)
	err = req.Write(bw)
	if retiring {
		req.Header.ResetConnectionClose()
	}
	if err == nil {
		err = bw.Flush()
	}
	hc.ReleaseWriter(bw)
	if err != nil {
		hc.CloseConn(cc)
		return true, asTimeout(err)
	}
	if err := conn.SetReadDeadline(earliest(deadline, hc.ReadTimeout)); err != nil {
		hc.CloseConn(cc)
		return true, err
	}
	if hc.DisableHeaderNamesNormalizing {
		resp.Header.DisableNormalizing()
	}
	br := hc.AcquireReader(conn)
	if err := readAnswerHeader(br, &resp.Header); err != nil {
		hc.ReleaseReader(br)
		hc.CloseConn(cc)
		return true, err // as fasthttp's: the usual cause is a kept-alive connection the pod closed
	}
	reuse := !retiring && !req.ConnectionClose() && !resp.Header.ConnectionClose()
	n := resp.Header.ContentLength()
	switch {
	case resp.SkipBody || req.Header.IsHead() || bodiless(resp.StatusCode()):
	case resp.StreamBody && (n < 0 || n > maxBufferedResponse):
		// The stream gives the connection back when it is closed: fasthttp closes a body stream
		// once it is done with it, and releasing resp closes it too.
		s := &podStream{body: fasthttp.AcquireResponse()}
		s.release = func(ended bool) {
			hc.ReleaseReader(br)
			if ended && reuse {
				hc.ReleaseConn(cc)
			} else {
				hc.CloseConn(cc) // the rest of the body is still on it
			}
		}
		// s.body only reads the body (its length, its chunks, its trailer): fasthttp hands out its
		// body reader through a Response, and resp's own would be released by SetBodyStream.
		s.body.Header.SetContentLength(n)
		s.body.StreamBody = true
		if err := s.body.ReadBody(br, 0); err != nil { // sets the reader up; reads nothing yet
			fasthttp.ReleaseResponse(s.body)
			hc.ReleaseReader(br)
			hc.CloseConn(cc)
			return false, err
		}
		resp.SetBodyStream(s, n)
		return false, nil
	default:
		resp.StreamBody = false
		err = resp.ReadBody(br, hc.MaxResponseBodySize)
		if err == nil && n == -1 {
			err = resp.Header.ReadTrailer(br)
		}
		if err != nil {
			hc.ReleaseReader(br)
			hc.CloseConn(cc)
			return false, asTimeout(err)
		}
	}
	hc.ReleaseReader(br)
	if reuse {
		hc.ReleaseConn(cc)
	} else {
		hc.CloseConn(cc)
	}
	return false, nil
}

// readAnswerHeader reads the header of a pod's answer from br into h, past any 1xx answers that
// come before it (101 Switching Protocols is an answer).
func readAnswerHeader(br *bufio.Reader, h *fasthttp.ResponseHeader) error {
	for range maxInterimAnswers + 1 {
		if err := h.Read(br); err != nil {
			return err
		}
		if s := h.StatusCode(); s < 100 || s >= 200 || s == fasthttp.StatusSwitchingProtocols {
			return nil
		}
	}
	return errTooManyInterim
}

// bodiless reports an answer status that has no body (RFC 9110 §6.4.1).
func bodiless(status int) bool {
	return status < 200 || status == fasthttp.StatusNoContent || status == fasthttp.StatusNotModified
}

// earliest returns the earlier of deadline (zero: none) and timeout from now (zero: none).
func earliest(deadline time.Time, timeout time.Duration) time.Time {
	if timeout > 0 {
		if t := time.Now().Add(timeout); deadline.IsZero() || t.Before(deadline) {
			return t
		}
	}
	return deadline
}

// asTimeout returns fasthttp.ErrTimeout for a timed-out read or write, so that the caller tells
// a pod that did not answer in time (504) from one that failed (502); other errors as they are.
func asTimeout(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fasthttp.ErrTimeout
	}
	return err
}

// podStream is a pod's answer body that streams (passTransport), read from the pod's connection
// as the router's client takes it. Closing it gives the connection back to the pool when the body
// was read to its end, and closes the connection otherwise. fasthttp reads and closes a body
// stream from one goroutine. It is not pooled: an answer that streams is large or long, and its
// two allocations (the stream and release) are nothing beside it.
type podStream struct {
	body    *fasthttp.Response // holds fasthttp's reader of the body; nil once closed
	release func(ended bool)   // gives back the connection and its reader
	ended   bool               // the body was read to its end
}

func (s *podStream) Read(p []byte) (int, error) {
	n, err := s.body.BodyStream().Read(p)
	if err == io.EOF {
		s.ended = true
	}
	return n, err
}

func (s *podStream) Close() error {
	if s.body == nil {
		return nil
	}
	fasthttp.ReleaseResponse(s.body) // releases the reader, which must not outlive the connection
	s.body = nil
	s.release(s.ended)
	return nil
}
