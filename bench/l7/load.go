//go:build linux

package l7

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Target is what the load generator sends: one HTTP/1.1 request, the same
// bytes on every connection, and what a good answer looks like.
type Target struct {
	// Addr is the host:port dialled (plain TCP).
	Addr string
	// Method and Path of the request; Method "" is GET, Path "" is "/".
	Method, Path string
	// Body is the request body, sent with Content-Length; nil sends none.
	Body []byte
	// WantBody is the length every answer's body must have; -1 accepts any.
	// An answer is good if its status is 200 and its body has this length.
	WantBody int
}

func (t Target) wire() []byte {
	method, path := t.Method, t.Path
	if method == "" {
		method = http.MethodGet
	}
	if path == "" {
		path = "/"
	}
	req := method + " " + path + " HTTP/1.1\r\nHost: " + t.Addr + "\r\nUser-Agent: peerd-l7-bench\r\n"
	if t.Body != nil {
		req += "Content-Type: application/octet-stream\r\nContent-Length: " + strconv.Itoa(len(t.Body)) + "\r\n"
	}
	return append([]byte(req+"\r\n"), t.Body...)
}

// Window is called at the bounds of a run's measured window: Start when it
// opens, End when it closes (both from one goroutine, Start first). Either
// may be nil. The benchmark reads CPU times there.
type Window struct {
	Start, End func()
}

func (w Window) start() {
	if w.Start != nil {
		w.Start()
	}
}

func (w Window) end() {
	if w.End != nil {
		w.End()
	}
}

// Result is what one run measured.
type Result struct {
	// Kind is "closed-loop" or "fixed-rate".
	Kind string
	// Conns is the number of keep-alive connections (closed-loop: also the
	// concurrency; fixed-rate: the most requests in flight at once).
	Conns int
	// Window is the length of the measured window: the fixed duration of a
	// closed-loop run; for a fixed-rate run, from the first scheduled send
	// to the last answer.
	Window time.Duration
	// Completed counts good answers: for closed-loop, those that arrived in
	// the window; for fixed-rate, all of them.
	Completed int
	// Errors counts requests that failed (bad status, short body, broken
	// connection, timeout), warm-up included; FirstError is the first one.
	Errors     int
	FirstError string
	// Redials counts connections opened after the first Conns, because a
	// server closed one (Connection: close, idle close) or after an error.
	Redials int
	// Latency holds one sample per good answer, sorted. Closed-loop: from
	// writing the request to reading the whole answer. Fixed-rate: from the
	// request's scheduled send time, so a request that had to wait for a
	// free connection, or a late send, counts its wait; requests that could
	// not be sent before the run's deadline count with the time from their
	// schedule to the deadline (a lower bound), see Missed.
	Latency []time.Duration

	// Fixed-rate only.

	// Rate is the offered rate (requests/s) and Scheduled the number of
	// requests it scheduled over the duration.
	Rate      float64
	Scheduled int
	// Missed counts scheduled requests not answered by the deadline (the
	// duration plus a grace period): the offered rate was above what the
	// path could serve.
	Missed int
	// Service holds, per good answer and sorted, the time from the actual
	// send to the answer (what a closed-loop tool would report).
	Service []time.Duration
	// Lag holds, per request sent and sorted, how late the send was against
	// its schedule: the client's own pacing error plus waiting for a free
	// connection. It is part of Latency.
	Lag []time.Duration
}

// RPS is good answers per second of the window.
func (r *Result) RPS() float64 {
	if r.Window <= 0 {
		return 0
	}
	return float64(r.Completed) / r.Window.Seconds()
}

// Percentile returns the p-th percentile (0 < p <= 100) of sorted samples,
// nearest-rank, or 0 for none.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// errStale marks a failure on a reused connection before any byte of the
// answer arrived: the server had closed it while idle. The request is
// retried once on a new connection.
var errStale = errors.New("connection closed before the answer")

// conn is one keep-alive client connection.
type conn struct {
	t       Target
	req     []byte
	nc      net.Conn
	br      *bufio.Reader
	used    bool // an answer has been read on nc
	dials   int
	timeout time.Time
}

func newConn(t Target, req []byte) *conn { return &conn{t: t, req: req} }

func (c *conn) dial() error {
	nc, err := net.DialTimeout("tcp", c.t.Addr, 5*time.Second)
	if err != nil {
		return err
	}
	if !c.timeout.IsZero() {
		if err := nc.SetDeadline(c.timeout); err != nil {
			nc.Close()
			return err
		}
	}
	c.dials++
	c.nc, c.used = nc, false
	if c.br == nil {
		c.br = bufio.NewReaderSize(nc, 16<<10)
	} else {
		c.br.Reset(nc)
	}
	return nil
}

func (c *conn) close() {
	if c.nc != nil {
		c.nc.Close()
		c.nc = nil
	}
}

// setDeadline bounds every later read and write, on this connection and on
// those it redials.
func (c *conn) setDeadline(t time.Time) error {
	c.timeout = t
	if c.nc != nil {
		return c.nc.SetDeadline(t)
	}
	return nil
}

// do sends the request and reads the answer, redialling first if needed.
func (c *conn) do() error {
	for attempt := 0; ; attempt++ {
		if c.nc == nil {
			if err := c.dial(); err != nil {
				return err
			}
		}
		reused := c.used
		err := c.roundTrip()
		if err == nil {
			return nil
		}
		c.close()
		if !reused || attempt > 0 || !errors.Is(err, errStale) {
			return err
		}
	}
}

func (c *conn) roundTrip() error {
	if _, err := c.nc.Write(c.req); err != nil {
		return staleIf(err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return staleIf(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("read answer body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	if c.t.WantBody >= 0 && n != int64(c.t.WantBody) {
		return fmt.Errorf("answer body of %d bytes, want %d", n, c.t.WantBody)
	}
	c.used = true
	if resp.Close {
		c.close()
	}
	return nil
}

func staleIf(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return fmt.Errorf("%w: %v", errStale, err)
	}
	return err
}

// prime opens n connections and sends one request on each, so that the
// run measures neither connection set-up nor handshakes behind the
// proxies.
func prime(t Target, n int) ([]*conn, error) {
	req := t.wire()
	conns := make([]*conn, 0, n)
	for i := 0; i < n; i++ {
		c := newConn(t, req)
		err := c.setDeadline(time.Now().Add(10 * time.Second))
		if err == nil {
			err = c.do()
		}
		if err != nil {
			c.close()
			closeAll(conns)
			return nil, fmt.Errorf("connection %d of %d to %s: %w", i+1, n, t.Addr, err)
		}
		conns = append(conns, c)
	}
	return conns, nil
}

func closeAll(conns []*conn) {
	for _, c := range conns {
		c.close()
	}
}

// tally collects one worker's samples; merge adds them into a Result.
type tally struct {
	completed, errors int
	firstErr          error
	latency, service  []time.Duration
	lag               []time.Duration
	missed            int
}

func (t *tally) fail(err error) {
	t.errors++
	if t.firstErr == nil {
		t.firstErr = err
	}
}

func merge(r *Result, conns []*conn, tallies []*tally) {
	for _, t := range tallies {
		r.Completed += t.completed
		r.Errors += t.errors
		if t.firstErr != nil && r.FirstError == "" {
			r.FirstError = t.firstErr.Error()
		}
		r.Latency = append(r.Latency, t.latency...)
		r.Service = append(r.Service, t.service...)
		r.Lag = append(r.Lag, t.lag...)
		r.Missed += t.missed
	}
	for _, c := range conns {
		r.Redials += c.dials - 1
	}
	slices.Sort(r.Latency)
	slices.Sort(r.Service)
	slices.Sort(r.Lag)
}

// ClosedLoop runs conns keep-alive connections, each sending its next
// request as soon as the previous answer is read, for warmup (not measured)
// and then dur (measured). It returns an error only if the connections
// cannot be set up; failures during the run are counted in the Result.
func ClosedLoop(t Target, conns int, warmup, dur time.Duration, w Window) (*Result, error) {
	cs, err := prime(t, conns)
	if err != nil {
		return nil, err
	}
	defer closeAll(cs)
	start := time.Now()
	from := start.Add(warmup)
	to := from.Add(dur)
	for _, c := range cs {
		if err := c.setDeadline(to.Add(10 * time.Second)); err != nil {
			return nil, err
		}
	}
	windowDone := make(chan struct{})
	go func() {
		defer close(windowDone)
		time.Sleep(time.Until(from))
		w.start()
		time.Sleep(time.Until(to))
		w.end()
	}()
	tallies := make([]*tally, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		tl := &tally{latency: make([]time.Duration, 0, 1<<14)}
		tallies[i] = tl
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				t0 := time.Now()
				if !t0.Before(to) {
					return
				}
				err := c.do()
				t1 := time.Now()
				if err != nil {
					tl.fail(err)
					time.Sleep(time.Millisecond) // no hot loop against a broken path
					continue
				}
				if !t1.Before(from) && t1.Before(to) {
					tl.completed++
					tl.latency = append(tl.latency, t1.Sub(t0))
				}
			}
		}()
	}
	wg.Wait()
	<-windowDone
	r := &Result{Kind: "closed-loop", Conns: conns, Window: dur}
	merge(r, cs, tallies)
	return r, nil
}

// FixedRate sends requests at rate per second for dur, open loop: request i
// is scheduled at start + i/rate whatever happened to the earlier ones, and
// goes out on the first of conns connections free at that time (which
// waits, and so adds to its latency, if none is). Latency is measured from
// the scheduled time. Requests still unanswered when the grace period after
// dur ends (max(2 s, dur/2)) are counted as Missed. It returns an error only
// if the connections cannot be set up.
func FixedRate(t Target, rate float64, conns int, dur time.Duration, w Window) (*Result, error) {
	if rate <= 0 || math.IsNaN(rate) || math.IsInf(rate, 0) {
		return nil, fmt.Errorf("fixed-rate: rate %v", rate)
	}
	cs, err := prime(t, conns)
	if err != nil {
		return nil, err
	}
	defer closeAll(cs)
	total := int(dur.Seconds() * rate)
	interval := float64(time.Second) / rate
	start := time.Now().Add(20 * time.Millisecond)
	deadline := start.Add(dur + max(2*time.Second, dur/2))
	for _, c := range cs {
		if err := c.setDeadline(deadline); err != nil {
			return nil, err
		}
	}
	sched := func(i int64) time.Time { return start.Add(time.Duration(float64(i) * interval)) }

	var next atomic.Int64
	tallies := make([]*tally, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		n := total/len(cs) + 1
		tl := &tally{latency: make([]time.Duration, 0, n), service: make([]time.Duration, 0, n), lag: make([]time.Duration, 0, n)}
		tallies[i] = tl
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(total) {
					return
				}
				at := sched(i)
				waitUntil(at)
				sent := time.Now()
				if !sent.Before(deadline) {
					tl.missed++
					tl.latency = append(tl.latency, deadline.Sub(at))
					continue
				}
				err := c.do()
				done := time.Now()
				switch {
				case errors.Is(err, os.ErrDeadlineExceeded):
					tl.missed++
					tl.latency = append(tl.latency, deadline.Sub(at))
				case err != nil:
					tl.fail(err)
				default:
					tl.completed++
					tl.latency = append(tl.latency, done.Sub(at))
					tl.service = append(tl.service, done.Sub(sent))
				}
				tl.lag = append(tl.lag, sent.Sub(at))
			}
		}()
	}
	waitUntil(start)
	w.start()
	wg.Wait()
	window := time.Since(start)
	w.end()
	r := &Result{Kind: "fixed-rate", Conns: conns, Window: window, Rate: rate, Scheduled: total}
	merge(r, cs, tallies)
	return r, nil
}

// prctl(PR_SET_TIMERSLACK): the kernel may delay a sleeping thread's wake-up
// by its timer slack, 50 µs by default, to batch wake-ups.
const (
	prSetTimerSlack = 29
	timerSlackNs    = 1000
)

// waitUntil returns at t or a little after. The Go runtime's timers wake up
// to a millisecond late on some kernels (epoll_pwait's timeout is in ms),
// which at sub-millisecond latencies would swamp what is measured, so the
// last stretch is a nanosleep(2) (one OS thread blocked) with a timer slack
// of 1 µs; see Result.Lag for what it achieved.
func waitUntil(t time.Time) {
	for {
		d := time.Until(t)
		if d <= 0 {
			return
		}
		if d > 3*time.Millisecond {
			time.Sleep(d - 2*time.Millisecond)
			continue
		}
		// The timer slack is per thread and this goroutine may be on any:
		// set it on this one, for the nanosleep that follows.
		_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerSlack, timerSlackNs, 0)
		ts := syscall.NsecToTimespec(d.Nanoseconds())
		_ = syscall.Nanosleep(&ts, nil) // EINTR: go round again
	}
}

// Merge combines runs of the same kind against the same target (rounds
// interleaved with other targets' runs) into one Result: counts and windows
// add up, samples are pooled. It returns nil for no runs.
func Merge(runs ...*Result) *Result {
	if len(runs) == 0 {
		return nil
	}
	m := &Result{Kind: runs[0].Kind, Conns: runs[0].Conns, Rate: runs[0].Rate}
	for _, r := range runs {
		m.Window += r.Window
		m.Completed += r.Completed
		m.Errors += r.Errors
		if m.FirstError == "" {
			m.FirstError = r.FirstError
		}
		m.Redials += r.Redials
		m.Scheduled += r.Scheduled
		m.Missed += r.Missed
		m.Latency = append(m.Latency, r.Latency...)
		m.Service = append(m.Service, r.Service...)
		m.Lag = append(m.Lag, r.Lag...)
	}
	slices.Sort(m.Latency)
	slices.Sort(m.Service)
	slices.Sort(m.Lag)
	return m
}
