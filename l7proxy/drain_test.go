package l7proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestGatewayDrainFinishesHandshakes: a connection the gateway accepted
// before Close (a reload's drain, a stop) whose TLS handshake has not
// finished yet is still served: Close waits for the handshake and the
// request instead of cancelling them. The fault suite found the bug: a
// reload of the node holding the gateway failed the calls whose
// handshakes it was in the middle of.
func TestGatewayDrainFinishesHandshakes(t *testing.T) {
	g := startFuzzGateway(t)
	raw, err := net.DialTimeout("tcp", g.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	time.Sleep(100 * time.Millisecond) // accepted, waiting for the ClientHello

	closed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		closed <- g.p.Close(ctx)
	}()
	time.Sleep(200 * time.Millisecond) // Close is draining now
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a connection it accepted was still in its handshake", err)
	default:
	}

	conn := tls.Client(raw, g.client)
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if err := conn.Handshake(); err != nil {
		t.Fatalf("the handshake of a connection accepted before Close: %v", err)
	}
	if _, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: billing\r\nConnection: close\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("the request on it: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the request on it: %s, want 200", resp.Status)
	}
	conn.Close()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return once the drained connection ended")
	}
}
