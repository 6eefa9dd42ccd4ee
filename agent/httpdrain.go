package agent

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// httpDrain makes a graceful stop of an http.Server (a reload's hand-over,
// a SIGTERM) serve every connection the server accepted before it: the
// drain waits for each to begin its first request, then net/http's
// Shutdown waits for the requests. Shutdown alone counts a new connection
// whose first request it has not read for 5 s as idle and closes it: a
// caller that connected, then was slow to send (or a process too starved
// to read, as a guest under emulation during a reload is), gets EOF for
// a request it had every right to have served.
type httpDrain struct {
	mu    sync.Mutex
	fresh map[net.Conn]struct{} // accepted, first request not begun
}

// watchFreshConns installs the connection-state hook on srv (before it
// serves) and returns the drain that uses it.
func watchFreshConns(srv *http.Server) *httpDrain {
	d := &httpDrain{fresh: map[net.Conn]struct{}{}}
	prev := srv.ConnState
	srv.ConnState = func(c net.Conn, s http.ConnState) {
		d.mu.Lock()
		if s == http.StateNew {
			d.fresh[c] = struct{}{}
		} else {
			delete(d.fresh, c)
		}
		d.mu.Unlock()
		if prev != nil {
			prev(c, s)
		}
	}
	return d
}

func (d *httpDrain) pending() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.fresh)
}

// shutdown stops srv accepting on ln, waits until every connection it
// accepted has begun its first request (each is bounded by the server's
// ReadHeaderTimeout) or ctx ends, then shuts srv down gracefully.
func (d *httpDrain) shutdown(ctx context.Context, srv *http.Server, ln net.Listener) error {
	if ln != nil {
		_ = ln.Close() // Serve returns; Shutdown below closes it again, harmlessly
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for d.pending() > 0 {
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), ignoreClosed(srv.Shutdown(ctx)))
		case <-tick.C:
		}
	}
	return ignoreClosed(srv.Shutdown(ctx))
}

// ignoreClosed drops the error of closing a listener that is closed
// already.
func ignoreClosed(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// serveError is what a Serve loop's end is worth logging: nothing when
// the server was shut down or its listener closed for the drain.
func serveError(err error) error {
	if err == nil || errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
