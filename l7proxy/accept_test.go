package l7proxy

import (
	"bytes"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// scriptedListener returns its results in order from Accept, then
// net.ErrClosed.
type scriptedListener struct {
	mu      sync.Mutex
	results []any // net.Conn or error
}

func (l *scriptedListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.results) == 0 {
		return nil, net.ErrClosed
	}
	r := l.results[0]
	l.results = l.results[1:]
	if err, ok := r.(error); ok {
		return nil, err
	}
	return r.(net.Conn), nil
}

func (l *scriptedListener) Close() error   { return nil }
func (l *scriptedListener) Addr() net.Addr { return &net.TCPAddr{} }

// namedConn is a net.Conn that only has a name.
type namedConn struct {
	net.Conn
	name string
}

func TestAcceptLoop(t *testing.T) {
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	c1, c2 := &namedConn{name: "c1"}, &namedConn{name: "c2"}
	ms := time.Millisecond
	tests := []struct {
		name    string
		results []any
		sleeps  []time.Duration
		handled []string
	}{
		{
			name:    "errors back off, doubling; a success resets the backoff",
			results: []any{emfile, emfile, emfile, c1, emfile, emfile, c2},
			sleeps:  []time.Duration{5 * ms, 10 * ms, 20 * ms, 5 * ms, 10 * ms},
			handled: []string{"c1", "c2"},
		},
		{
			name:    "the backoff stops at a second",
			results: slices.Repeat([]any{emfile}, 10),
			sleeps:  []time.Duration{5 * ms, 10 * ms, 20 * ms, 40 * ms, 80 * ms, 160 * ms, 320 * ms, 640 * ms, time.Second, time.Second},
		},
		{
			name:    "a wrapped net.ErrClosed ends the loop",
			results: []any{c1, &net.OpError{Op: "accept", Net: "tcp", Err: net.ErrClosed}, c2},
			handled: []string{"c1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			var sleeps []time.Duration
			var mu sync.Mutex
			var handled []string
			var wg sync.WaitGroup
			wg.Add(len(tt.handled))
			acceptLoop(&scriptedListener{results: slices.Clone(tt.results)}, log, "test listener", func(c net.Conn) {
				defer wg.Done()
				mu.Lock()
				defer mu.Unlock()
				handled = append(handled, c.(*namedConn).name)
			}, func(d time.Duration) { sleeps = append(sleeps, d) })
			wg.Wait()
			slices.Sort(handled)
			if !slices.Equal(handled, tt.handled) {
				t.Errorf("handled: got %v, want %v", handled, tt.handled)
			}
			if !slices.Equal(sleeps, tt.sleeps) {
				t.Errorf("sleeps: got %v, want %v", sleeps, tt.sleeps)
			}
			if got, want := strings.Count(logs.String(), `msg="accept on test listener"`), len(tt.sleeps); got != want {
				t.Errorf("got %d warnings, want %d:\n%s", got, want, logs.String())
			}
		})
	}
}

// TestAcceptLoopRealListener: connections on a loopback listener are
// handled concurrently (a handler that blocks does not stop the next
// accept), and closing the listener ends the loop.
func TestAcceptLoopRealListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	got := make(chan string, 2)
	done := make(chan struct{})
	go func() {
		defer close(done)
		acceptLoop(ln, slog.New(slog.DiscardHandler), "test listener", func(c net.Conn) {
			defer c.Close()
			got <- c.RemoteAddr().String()
			<-release
		}, func(time.Duration) { t.Error("slept: no accept should fail") })
	}()
	for i := range 2 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		select {
		case addr := <-got:
			if addr != c.LocalAddr().String() {
				t.Errorf("connection %d: handled %s, want %s", i, addr, c.LocalAddr())
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("connection %d not handled in 5 s (handlers serialised?)", i)
		}
	}
	close(release)
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("the loop did not end in 5 s after Close of %s", ln.Addr())
	}
}
