package agent

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestHTTPDrainServesASlowFirstRequest: a connection accepted before the
// drain began whose first request comes 6 s later (past net/http's 5 s
// rule for new connections) is served, not closed; the drain ends once
// it is. The fault suite's and the systemd VM test's reloads drain the
// HTTP API this way.
func TestHTTPDrainServesASlowFirstRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("waits 6 s: skipped with -short")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "served\n")
	}), ReadHeaderTimeout: 10 * time.Second}
	d := watchFreshConns(srv)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for deadline := time.Now().Add(5 * time.Second); d.pending() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the server never saw the new connection")
		}
	}
	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		drained <- d.shutdown(ctx, srv, ln)
	}()
	time.Sleep(6 * time.Second)
	select {
	case err := <-drained:
		t.Fatalf("the drain ended (%v) while a connection it accepted had not sent its request", err)
	default:
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("the slow request: %v (net/http's Shutdown alone closes such a connection)", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the slow request: %s", resp.Status)
	}
	c.Close()
	select {
	case err := <-drained:
		if err != nil {
			t.Fatalf("drain: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the drain did not end once the connection was served")
	}
	if err := serveError(<-served); err != nil {
		t.Fatalf("Serve: %v", err)
	}
}
