// Package checks runs a node's health checks (TTL, HTTP and TCP) and reports
// each status change through a callback. It knows nothing of the catalog's
// replication: the agent's local state decides what to do with a change.
//
// Lifecycle: New allocates a Runner and starts nothing; each Add starts its
// check (a goroutine, or a TTL timer) and Remove stops it; Close(ctx) stops
// every check, waits for their goroutines within ctx, refuses later Adds
// with ErrClosed, and is idempotent. There is no Start: a Runner with no
// check runs nothing.
package checks

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/decode"
)

// Errors returned by Runner methods.
var (
	ErrUnknownCheck = errors.New("unknown check")
	ErrNotTTL       = errors.New("check is not a TTL check")
	// ErrClosed means the Runner was closed: it starts no more checks.
	ErrClosed = errors.New("check runner closed")
)

// Defaults applied to a check definition that leaves them out.
const (
	DefaultInterval = 10 * time.Second
	DefaultTimeout  = 10 * time.Second
	// MinInterval is the shortest interval accepted; shorter ones are raised.
	MinInterval = 100 * time.Millisecond
	// maxOutput bounds the output kept from an HTTP check's body.
	maxOutput = 4096
)

// Notify receives a check's new status and output. It is called from the
// check's own goroutine, never concurrently for the same check, and must not
// block for long.
type Notify func(checkID, status, output string)

// Runner runs checks. The zero value is not usable; use New.
type Runner struct {
	notify Notify
	log    *slog.Logger

	mu     sync.Mutex
	checks map[string]*running
	closed bool
}

type running struct {
	def    state.CheckType
	cancel context.CancelFunc
	done   chan struct{}
	ttl    *time.Timer
}

// New returns a Runner that reports through notify. A nil logger means
// slog.Default().
func New(notify Notify, log *slog.Logger) *Runner {
	if log == nil {
		log = slog.Default()
	}
	return &Runner{notify: notify, log: log, checks: map[string]*running{}}
}

// Kind returns the check's type name as Consul reports it ("ttl", "http",
// "tcp"), or "" if def defines no runnable check.
func Kind(def *state.CheckType) string {
	switch {
	case def.TTL > 0:
		return "ttl"
	case def.HTTP != "":
		return "http"
	case def.TCP != "":
		return "tcp"
	}
	return ""
}

// Validate reports what is wrong with a check definition, naming the field.
func Validate(def *state.CheckType) error {
	n := 0
	for _, set := range []bool{def.TTL > 0, def.HTTP != "", def.TCP != ""} {
		if set {
			n++
		}
	}
	switch {
	case n == 0:
		return errors.New("check must define one of TTL, HTTP or TCP")
	case n > 1:
		return errors.New("check must define only one of TTL, HTTP or TCP")
	}
	if def.HTTP != "" && !strings.HasPrefix(def.HTTP, "http://") && !strings.HasPrefix(def.HTTP, "https://") {
		return fieldErr("HTTP", "%q must be an http:// or https:// URL", def.HTTP)
	}
	if def.TCP != "" {
		if _, _, err := net.SplitHostPort(def.TCP); err != nil {
			return fieldErr("TCP", "%q must be host:port", def.TCP)
		}
	}
	if (def.HTTP != "" || def.TCP != "") && def.Interval == 0 {
		return fieldErr("Interval", "required for HTTP and TCP checks (e.g. \"10s\")")
	}
	if def.Status != "" && !state.ValidHealthStatus(def.Status) {
		return fieldErr("Status", "%q must be passing, warning or critical", def.Status)
	}
	return nil
}

// fieldErr is a validation error naming the field at fault.
func fieldErr(field, format string, a ...any) error {
	return &decode.Error{Path: field, Msg: fmt.Sprintf(format, a...)}
}

// Add starts (or restarts with a new definition) the check id.
func (r *Runner) Add(id string, def state.CheckType) error {
	if err := Validate(&def); err != nil {
		return fmt.Errorf("check %q: %w", id, err)
	}
	r.Remove(id)
	ctx, cancel := context.WithCancel(context.Background())
	rc := &running{def: def, cancel: cancel, done: make(chan struct{})}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		cancel()
		return fmt.Errorf("check %q: %w", id, ErrClosed)
	}
	r.checks[id] = rc
	r.mu.Unlock()
	switch Kind(&def) {
	case "ttl":
		rc.ttl = time.AfterFunc(def.TTL.D(), func() {
			r.notify(id, state.HealthCritical, "TTL expired")
		})
		close(rc.done)
	default:
		go func() {
			defer close(rc.done)
			r.loop(ctx, id, rc.def)
		}()
	}
	return nil
}

// Remove stops the check id; an unknown id is ignored.
func (r *Runner) Remove(id string) {
	r.mu.Lock()
	rc, ok := r.checks[id]
	delete(r.checks, id)
	r.mu.Unlock()
	if !ok {
		return
	}
	rc.cancel()
	if rc.ttl != nil {
		rc.ttl.Stop()
	}
	<-rc.done
}

// UpdateTTL records a TTL check's status and restarts its TTL.
func (r *Runner) UpdateTTL(id, status, output string) error {
	r.mu.Lock()
	rc, ok := r.checks[id]
	r.mu.Unlock()
	if !ok {
		return fmt.Errorf("check %q: %w", id, ErrUnknownCheck)
	}
	if rc.ttl == nil {
		return fmt.Errorf("check %q: %w", id, ErrNotTTL)
	}
	rc.ttl.Reset(rc.def.TTL.D())
	r.notify(id, status, output)
	return nil
}

// Close stops every check and waits, within ctx, for their goroutines to
// return. Later calls to Add fail with ErrClosed; later calls to Close
// return nil.
func (r *Runner) Close(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	stopping := make([]*running, 0, len(r.checks))
	for id, rc := range r.checks {
		stopping = append(stopping, rc)
		delete(r.checks, id)
	}
	r.mu.Unlock()
	for _, rc := range stopping {
		rc.cancel()
		if rc.ttl != nil {
			rc.ttl.Stop()
		}
	}
	for _, rc := range stopping {
		select {
		case <-rc.done:
		case <-ctx.Done():
			return fmt.Errorf("wait for the checks to stop: %w", ctx.Err())
		}
	}
	return nil
}

func (r *Runner) loop(ctx context.Context, id string, def state.CheckType) {
	interval := max(def.Interval.D(), MinInterval)
	timeout := def.Timeout.D()
	if timeout == 0 {
		timeout = min(DefaultTimeout, interval)
	}
	var successes, failures int
	last := ""
	for {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		status, output := runOnce(cctx, &def)
		cancel()
		if ctx.Err() != nil {
			return
		}
		// Consul's flap damping: a status only changes after enough
		// consecutive results in its direction.
		if status == state.HealthPassing {
			successes, failures = successes+1, 0
			if last != "" && last != state.HealthPassing && successes < max(def.SuccessBeforePassing, 1) {
				status = last
			}
		} else {
			successes, failures = 0, failures+1
			if last == state.HealthPassing && failures < max(def.FailuresBeforeCritical, 1) {
				status = last
			}
		}
		last = status
		r.notify(id, status, output)
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

func runOnce(ctx context.Context, def *state.CheckType) (status, output string) {
	if def.TCP != "" {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", def.TCP)
		if err != nil {
			return state.HealthCritical, fmt.Sprintf("TCP connect %s: %v", def.TCP, err)
		}
		_ = conn.Close()
		return state.HealthPassing, fmt.Sprintf("TCP connect %s: Success", def.TCP)
	}
	return runHTTP(ctx, def)
}

func runHTTP(ctx context.Context, def *state.CheckType) (string, string) {
	method := def.Method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if def.Body != "" {
		body = strings.NewReader(def.Body)
	}
	req, err := http.NewRequestWithContext(ctx, method, def.HTTP, body)
	if err != nil {
		return state.HealthCritical, fmt.Sprintf("build request: %v", err)
	}
	for k, vs := range def.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "peerd health check")
	}
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: def.TLSSkipVerify, ServerName: def.TLSServerName}, //nolint:gosec // operator's choice per check
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return state.HealthCritical, fmt.Sprintf("HTTP %s %s: %v", method, def.HTTP, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxOutput))
	out := fmt.Sprintf("HTTP %s %s: %s Output: %s", method, def.HTTP, resp.Status, b)
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return state.HealthPassing, out
	case resp.StatusCode == http.StatusTooManyRequests:
		return state.HealthWarning, out
	}
	return state.HealthCritical, out
}
