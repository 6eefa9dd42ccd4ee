package l7proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// serveH1 is the gateway's L7 path for HTTP/1.1 connections. Requests are
// read, decided (see decide), forwarded and answered in this one goroutine:
// no http.Server, no reverse-proxy copies, no per-request goroutine
// hand-offs. HTTP/2 connections go through net/http instead (serveHTTP).
func (g *gateway) serveH1(tc *tls.Conn, ci *connInfo) {
	p := g.p
	done, ok := p.track(tc)
	if !ok {
		tc.Close()
		return
	}
	defer done()
	defer tc.Close()
	lim := &limitedReader{r: tc, n: -1}
	br := bufio.NewReaderSize(lim, 16<<10)
	cw := &countingWriter{w: tc}
	bw := bufio.NewWriterSize(cw, 16<<10)
	idle := p.cfg.IdleTimeout
	if idle == 0 {
		idle = 5 * time.Minute
	}
	// A drain closes connections idle between requests at once. A new
	// connection (its handshake done, its first request not read yet) is
	// not idle: its caller sent it to be served, so it gets
	// ReadHeaderTimeout to send that request, as net/http's Shutdown
	// lets a new connection be.
	var waiting, first atomic.Bool
	first.Store(true)
	stop := context.AfterFunc(p.draining, func() {
		switch {
		case first.Load():
			_ = tc.SetReadDeadline(time.Now().Add(p.cfg.ReadHeaderTimeout))
		case waiting.Load():
			_ = tc.SetReadDeadline(time.Unix(1, 0))
		}
	})
	defer stop()
	for {
		waiting.Store(true)
		if p.draining.Err() != nil && !first.Load() {
			return
		}
		if p.draining.Err() != nil {
			_ = tc.SetReadDeadline(time.Now().Add(p.cfg.ReadHeaderTimeout))
		} else {
			_ = tc.SetReadDeadline(time.Now().Add(idle))
		}
		if _, err := br.Peek(1); err != nil {
			g.noRequest(tc, ci)
			return
		}
		waiting.Store(false)
		first.Store(false)
		_ = tc.SetReadDeadline(time.Now().Add(p.cfg.ReadHeaderTimeout))
		lim.n = int64(p.cfg.MaxHeaderBytes) + 4096
		framing := peekFraming(br)
		req, err := http.ReadRequest(br)
		lim.n = -1
		if err == nil && (framing == framingConflict || (framing == framingUnknown && len(req.TransferEncoding) > 0)) {
			// net/http takes Transfer-Encoding over Content-Length and
			// drops the latter; a hop that reads them the other way would
			// see another request boundary (request smuggling).
			p.m.handshakeFail.WithLabelValues("gateway", "conflicting_length").Inc()
			p.log.Warn("gateway refused a request carrying both Content-Length and Transfer-Encoding (request smuggling)",
				"remote", tc.RemoteAddr().String(), "service", ci.service, "caller", ci.callerName(), "peer", ci.peer, "complete_header_seen", framing != framingUnknown)
			writeSimple(bw, http.StatusBadRequest, "request carries both Content-Length and Transfer-Encoding\n", true)
			_ = bw.Flush()
			return
		}
		if err != nil {
			switch {
			case errors.Is(err, errHeaderTooLarge):
				p.m.handshakeFail.WithLabelValues("gateway", "header_too_large").Inc()
				p.log.Info("gateway refused a request: headers too large", "service", ci.service, "caller", ci.callerName(), "peer", ci.peer)
				writeSimple(bw, http.StatusRequestHeaderFieldsTooLarge, "request headers too large\n", true)
			case isTimeout(err) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
				g.noRequest(tc, ci)
			default:
				p.m.handshakeFail.WithLabelValues("gateway", "bad_request").Inc()
				writeSimple(bw, http.StatusBadRequest, "malformed HTTP request\n", true)
			}
			_ = bw.Flush()
			return
		}
		_ = tc.SetReadDeadline(time.Time{})
		ci.requests.Add(1)
		if !g.serveH1Request(tc, ci, req, br, bw, cw) {
			return
		}
	}
}

// Framing verdicts of peekFraming.
const (
	framingOK       = iota // at most one of Content-Length and Transfer-Encoding
	framingConflict        // both
	framingUnknown         // the header block did not fit the read buffer
)

// peekFraming looks at the next request's header block in br, without
// consuming it, and reports whether it carries both Content-Length and
// Transfer-Encoding (net/http accepts that and deletes Content-Length, so
// the request cannot tell afterwards). It reads more only while the block
// is incomplete and fits br's buffer; on a read error it returns what it
// saw and lets ReadRequest report the error. framingUnknown means the
// block is larger than the buffer: the caller refuses such a request when
// it is chunked, since it cannot rule the conflict out.
func peekFraming(br *bufio.Reader) int {
	n := max(br.Buffered(), 1)
	for {
		b, err := br.Peek(n)
		if end := headerEnd(b); end >= 0 {
			return scanFraming(b[:end])
		}
		if err != nil {
			if len(b) >= br.Size() {
				return framingUnknown
			}
			return framingOK
		}
		if n >= br.Size() {
			return framingUnknown
		}
		n = min(max(br.Buffered(), len(b))+1, br.Size())
	}
}

// headerEnd is the length of the header block at the start of b (through
// its blank line; net/textproto also takes bare LF line ends), or -1.
func headerEnd(b []byte) int {
	for i := 0; i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		switch {
		case i+1 < len(b) && b[i+1] == '\n':
			return i + 2
		case i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n':
			return i + 3
		}
	}
	return -1
}

// scanFraming reports whether a header block names both Content-Length
// and Transfer-Encoding (names compared case-insensitively, continuation
// lines skipped, the request line ignored).
func scanFraming(block []byte) int {
	cl, te := false, false
	first := true
	for len(block) > 0 {
		line := block
		if i := bytes.IndexByte(block, '\n'); i >= 0 {
			line, block = block[:i], block[i+1:]
		} else {
			block = nil
		}
		if first {
			first = false
			continue
		}
		if len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
			continue
		}
		name, _, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		name = bytes.TrimSpace(name)
		cl = cl || bytes.EqualFold(name, []byte("Content-Length"))
		te = te || bytes.EqualFold(name, []byte("Transfer-Encoding"))
	}
	if cl && te {
		return framingConflict
	}
	return framingOK
}

// noRequest counts a connection that ended before a complete request.
func (g *gateway) noRequest(tc net.Conn, ci *connInfo) {
	if ci.requests.Load() == 0 {
		g.p.m.handshakeFail.WithLabelValues("gateway", "no_request").Inc()
		g.p.log.Info("gateway connection closed before a complete request (slow or oversized headers, or idle)",
			"remote", tc.RemoteAddr().String(), "service", ci.service, "caller", ci.callerName(), "peer", ci.peer)
	}
}

// serveH1Request answers one request; it reports whether the connection
// may carry another.
func (g *gateway) serveH1Request(tc *tls.Conn, ci *connInfo, req *http.Request, br *bufio.Reader, bw *bufio.Writer, cw *countingWriter) bool {
	start := time.Now()
	sent := cw.n
	keep := !req.Close
	code := 0
	body := &trackedBody{rc: req.Body}
	if req.Body != nil && req.Body != http.NoBody {
		req.Body = body
	}
	var ref *refusal
	defer func() { g.observe(ci, start, requestClass(code, ref), body.n.Load(), cw.n+int64(bw.Buffered())-sent) }()
	if strings.EqualFold(req.Header.Get("Expect"), "100-continue") {
		req.Header.Del("Expect")
		_, _ = bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
		if bw.Flush() != nil {
			return false
		}
	}
	pl, ref := g.decide(ci, req)
	if ref != nil {
		code = ref.code
		writeSimple(bw, ref.code, ref.msg, !keep)
		return bw.Flush() == nil && keep && drainBody(body)
	}
	upgrade := req.Header.Get("Upgrade") != ""
	removeHopHeaders(req.Header, upgrade)
	req.RequestURI = ""
	req.URL.Scheme, req.URL.Host = "http", req.Host
	ctx := context.WithValue(req.Context(), planKey{}, pl)
	cancel := context.CancelFunc(func() {})
	if pl.route.RequestTimeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, pl.route.RequestTimeout)
	}
	defer cancel()
	resp, err := g.fwd.roundTrip(req.WithContext(ctx))
	if err != nil && body.broken.Load() {
		// The client's body, not the instance, failed: it ended early or
		// its chunks are malformed. Answer as for a malformed request
		// (the connection cannot carry another), not with a 502.
		code = http.StatusBadRequest
		g.p.m.handshakeFail.WithLabelValues("gateway", "bad_request").Inc()
		g.p.log.Info("gateway refused a request: its body ended early or is malformed", "service", ci.service, "caller", ci.callerName(), "peer", ci.peer, "err", err)
		writeSimple(bw, code, "malformed HTTP request body\n", true)
		_ = bw.Flush()
		return false
	}
	if err != nil {
		code = g.fwd.errorCode(pl, err, ctx.Err())
		writeSimple(bw, code, errorMessage(code)+"\n", !keep)
		return bw.Flush() == nil && keep && drainBody(body)
	}
	defer resp.Body.Close()
	code = resp.StatusCode
	if code == http.StatusSwitchingProtocols {
		up, ok := resp.Body.(io.ReadWriteCloser)
		if !ok {
			return false
		}
		if resp.Write(bw) != nil || bw.Flush() != nil {
			return false
		}
		g.p.splice(&bufferedConn{Conn: tc, r: br}, upgradedConn{up}, g.p.tcpIdle(), discardCounter{}, discardCounter{})
		return false
	}
	removeHopHeaders(resp.Header, false)
	if pl.route.ResponseHeaders != nil {
		g.fwd.modifyResponse(resp)
	}
	if resp.ContentLength < 0 || resp.ContentLength > 64<<10 {
		// Streamed or large: send what arrived before waiting for more.
		resp.Body = &flushBeforeRead{rc: resp.Body, bw: bw}
	}
	if !keep {
		resp.Close = true
	}
	if err := resp.Write(bw); err != nil {
		return false
	}
	if bw.Flush() != nil {
		return false
	}
	return keep && !resp.Close && drainBody(body)
}

// drainBody reads what the instance left of a request body (up to 256 KiB)
// so the next request can be read; it reports whether that worked.
func drainBody(b *trackedBody) bool {
	if b.rc == nil || b.rc == http.NoBody || b.eof.Load() {
		return true
	}
	n, err := io.CopyN(io.Discard, b.rc, 256<<10)
	return err == io.EOF || (err == nil && n < 256<<10)
}

// writeSimple writes a short text response.
func writeSimple(bw *bufio.Writer, code int, msg string, closeConn bool) {
	_, _ = bw.WriteString("HTTP/1.1 " + strconv.Itoa(code) + " " + statusText(code) + "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " + strconv.Itoa(len(msg)) + "\r\n")
	if closeConn {
		_, _ = bw.WriteString("Connection: close\r\n")
	}
	_, _ = bw.WriteString("\r\n" + msg)
}

// hopHeaders are the hop-by-hop headers a proxy does not forward (RFC 9110
// section 7.6.1).
var hopHeaders = [...]string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// removeHopHeaders drops hop-by-hop headers and those Connection names;
// an upgrade keeps Connection and Upgrade.
func removeHopHeaders(h http.Header, upgrade bool) {
	for _, f := range h.Values("Connection") {
		for _, name := range strings.Split(f, ",") {
			if name = strings.TrimSpace(name); name != "" && !(upgrade && strings.EqualFold(name, "upgrade")) {
				h.Del(name)
			}
		}
	}
	for _, name := range hopHeaders {
		if upgrade && (name == "Connection" || name == "Upgrade") {
			continue
		}
		h.Del(name)
	}
}

// errHeaderTooLarge is returned once a request's header exceeds its limit.
var errHeaderTooLarge = errors.New("request header too large")

// limitedReader limits the bytes read while n >= 0 (during a request's
// header); n < 0 means no limit.
type limitedReader struct {
	r io.Reader
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n < 0 {
		return l.r.Read(p)
	}
	if l.n == 0 {
		return 0, errHeaderTooLarge
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// countingWriter counts the bytes written to the client.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// flushBeforeRead sends buffered response bytes before blocking for more
// of the body, so streamed responses are not held back.
type flushBeforeRead struct {
	rc io.ReadCloser
	bw *bufio.Writer
}

func (f *flushBeforeRead) Read(p []byte) (int, error) {
	if f.bw.Buffered() > 0 {
		if err := f.bw.Flush(); err != nil {
			return 0, err
		}
	}
	return f.rc.Read(p)
}

func (f *flushBeforeRead) Close() error { return f.rc.Close() }

// bufferedConn reads first what a bufio.Reader already holds.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// upgradedConn adapts an upgraded response body to net.Conn for splice.
type upgradedConn struct{ io.ReadWriteCloser }

func (upgradedConn) LocalAddr() net.Addr              { return nil }
func (upgradedConn) RemoteAddr() net.Addr             { return nil }
func (upgradedConn) SetDeadline(time.Time) error      { return nil }
func (upgradedConn) SetReadDeadline(time.Time) error  { return nil }
func (upgradedConn) SetWriteDeadline(time.Time) error { return nil }

// discardCounter is a byte sink for streams not counted per hop.
type discardCounter struct{}

func (discardCounter) Add(float64) {}

func statusText(code int) string {
	if code == 499 {
		return "Client Closed Request"
	}
	return http.StatusText(code)
}
