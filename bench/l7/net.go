//go:build linux

package l7

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// FreeAddr returns 127.0.0.1:<a port that was free a moment ago>.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitListening waits until addr accepts TCP connections, failing early if
// p exits.
func waitListening(addr string, timeout time.Duration, p *Proc) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if exited, werr := p.Exited(); exited {
			return fmt.Errorf("%s exited (%v) before listening on %s\n%s", p.Name, werr, addr, p.Tail(30))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening on %s within %s: %v\n%s", p.Name, addr, timeout, err, p.Tail(30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ProbeEcho sends GET http://addr/ on a new connection and returns nil if
// the echo server answered it, through whatever is in between: status 200,
// the echo server's header, and a body of wantBody bytes.
func ProbeEcho(addr string, wantBody int) error {
	client := &http.Client{
		Timeout:   3 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
	}
	resp, err := client.Get("http://" + addr + "/")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s: %s", resp.Status, strings.TrimSpace(string(body[:min(len(body), 200)])))
	}
	if resp.Header.Get(EchoHeader) != EchoValue {
		return fmt.Errorf("status 200 but not from the echo server (no %s header)", EchoHeader)
	}
	if len(body) != wantBody {
		return fmt.Errorf("body of %d bytes, want %d", len(body), wantBody)
	}
	return nil
}

// WaitEcho retries ProbeEcho until it succeeds or timeout passes, and then
// returns the last error.
func WaitEcho(addr string, wantBody int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := ProbeEcho(addr, wantBody)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer from the echo server through %s within %s: %w", addr, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
