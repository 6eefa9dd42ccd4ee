package l7proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// h1Pool is the HTTP/1.1 client of the local leg (gateway to an instance on
// this node). Unlike http.Transport, which hands every request to two
// goroutines per connection, it writes the request and reads the response
// in the calling goroutine, and keeps idle keep-alive connections per
// address. Requests asking for a protocol upgrade go elsewhere
// (http.Transport), as this pool never hands a connection over.
type h1Pool struct {
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	maxIdle     int
	idleTimeout time.Duration
	maxHeader   int64

	mu   sync.Mutex
	idle map[string][]*h1Conn
}

type h1Conn struct {
	c      net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
}

func newH1Pool(dial func(ctx context.Context, network, addr string) (net.Conn, error), maxIdle int, maxHeader int64) *h1Pool {
	return &h1Pool{dial: dial, maxIdle: maxIdle, idleTimeout: 90 * time.Second, maxHeader: maxHeader, idle: map[string][]*h1Conn{}}
}

// get returns an idle connection to addr, or dials one. A connection idle
// for more than a second is probed first: a server that closed it would
// otherwise fail the request after its body was sent.
func (p *h1Pool) get(ctx context.Context, addr string) (*h1Conn, bool, error) {
	now := time.Now()
	for {
		p.mu.Lock()
		list := p.idle[addr]
		if len(list) == 0 {
			p.mu.Unlock()
			break
		}
		pc := list[len(list)-1]
		p.idle[addr] = list[:len(list)-1]
		p.mu.Unlock()
		idle := now.Sub(pc.idleAt)
		if idle > p.idleTimeout || (idle > time.Second && !pc.alive()) {
			pc.c.Close()
			continue
		}
		return pc, true, nil
	}
	c, err := p.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	// writerOnly hides the connection's ReadFrom from bufio, which would
	// otherwise flush the header and send the body in a second write.
	return &h1Conn{c: c, br: bufio.NewReaderSize(c, 16<<10), bw: bufio.NewWriterSize(writerOnly{c}, 16<<10)}, false, nil
}

// alive reports whether an idle connection is still open: a read with an
// expired deadline must time out, not return data or EOF.
func (pc *h1Conn) alive() bool {
	if pc.br.Buffered() > 0 {
		return false // an unsolicited response: the connection is unusable
	}
	_ = pc.c.SetReadDeadline(time.Unix(1, 0))
	_, err := pc.br.Peek(1)
	_ = pc.c.SetReadDeadline(time.Time{})
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (p *h1Pool) put(addr string, pc *h1Conn) {
	pc.idleAt = time.Now()
	p.mu.Lock()
	if len(p.idle[addr]) < p.maxIdle {
		p.idle[addr] = append(p.idle[addr], pc)
		pc = nil
	}
	p.mu.Unlock()
	if pc != nil {
		pc.c.Close()
	}
}

// closeIdle closes every idle connection (shutdown).
func (p *h1Pool) closeIdle() {
	p.mu.Lock()
	all := p.idle
	p.idle = map[string][]*h1Conn{}
	p.mu.Unlock()
	for _, list := range all {
		for _, pc := range list {
			pc.c.Close()
		}
	}
}

// RoundTrip sends req on a pooled connection and returns the response,
// whose body gives the connection back to the pool at its end. A request
// without a body that fails on a reused connection before any response byte
// is retried once on a new connection.
func (p *h1Pool) RoundTrip(req *http.Request) (*http.Response, error) {
	addr := req.URL.Host
	for attempt := 0; ; attempt++ {
		pc, reused, err := p.get(req.Context(), addr)
		if err != nil {
			return nil, err
		}
		resp, err := p.exchange(pc, req)
		if err == nil {
			return resp, nil
		}
		pc.c.Close()
		replayable := req.Body == nil || req.Body == http.NoBody
		if !reused || !replayable || attempt > 0 || req.Context().Err() != nil {
			return nil, err
		}
	}
}

func (p *h1Pool) exchange(pc *h1Conn, req *http.Request) (*http.Response, error) {
	if dl, ok := req.Context().Deadline(); ok {
		_ = pc.c.SetDeadline(dl)
	} else {
		_ = pc.c.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(req.Context(), func() { _ = pc.c.SetDeadline(time.Unix(1, 0)) })
	if err := req.Write(pc.bw); err != nil {
		stop()
		return nil, fmt.Errorf("write request: %w", err)
	}
	if err := pc.bw.Flush(); err != nil {
		stop()
		return nil, fmt.Errorf("write request: %w", err)
	}
	var resp *http.Response
	var err error
	for {
		resp, err = http.ReadResponse(pc.br, req)
		if err != nil {
			stop()
			return nil, fmt.Errorf("read response: %w", err)
		}
		// Skip interim responses (100 Continue, 103 Early Hints).
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
	}
	reusable := !resp.Close && !req.Close && resp.StatusCode != http.StatusSwitchingProtocols
	body := &pooledBody{rc: resp.Body, pc: pc, pool: p, addr: req.URL.Host, reusable: reusable, stop: stop}
	if resp.Body == http.NoBody || resp.Body == nil {
		body.release(true)
		return resp, nil
	}
	resp.Body = body
	return resp, nil
}

// pooledBody returns its connection to the pool once read to the end; a
// body closed early closes the connection.
type pooledBody struct {
	rc       io.ReadCloser
	pc       *h1Conn
	pool     *h1Pool
	addr     string
	reusable bool
	stop     func() bool
	once     sync.Once
}

func (b *pooledBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.release(true)
	} else if err != nil {
		b.release(false)
	}
	return n, err
}

func (b *pooledBody) Close() error {
	b.release(false)
	return nil
}

func (b *pooledBody) release(atEOF bool) {
	b.once.Do(func() {
		stopped := b.stop()
		if atEOF && b.reusable && stopped {
			_ = b.pc.c.SetDeadline(time.Time{})
			b.pool.put(b.addr, b.pc)
			return
		}
		b.pc.c.Close()
	})
}

// writerOnly exposes only Write.
type writerOnly struct{ w io.Writer }

func (w writerOnly) Write(p []byte) (int, error) { return w.w.Write(p) }
