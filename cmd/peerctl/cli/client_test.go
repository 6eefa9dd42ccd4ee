package cli

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"syscall"
	"testing"
	"time"
)

func TestParseAddress(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{in: "", want: "http://127.0.0.1:8500"},
		{in: "10.0.0.1:8500", want: "http://10.0.0.1:8500"},
		{in: "localhost:8501", want: "http://localhost:8501"},
		{in: "[::1]:8500", want: "http://[::1]:8500"},
		{in: "http://10.0.0.1:8500", want: "http://10.0.0.1:8500"},
		{in: "http://10.0.0.1:8500/", want: "http://10.0.0.1:8500"},
		{in: "https://peerd.example:8501", want: "https://peerd.example:8501"},
		{in: "http://proxy.example/peerd/", want: "http://proxy.example/peerd"},
		{in: "unix:///run/peerd.sock", wantErr: true},
		{in: "http://", wantErr: true},
		{in: "10.0.0.1:8500?x=1", wantErr: true},
		{in: "http://user:pw@10.0.0.1:8500", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseAddress(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestClientDo(t *testing.T) {
	var got *http.Request
	var gotBody string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Error(err)
		}
		gotBody = string(b)
		w.Header().Set("X-Consul-Index", "42")
		w.Write([]byte(`{"ok":true}`))
	}))
	defer srv.Close()

	c, err := NewClient(ClientConfig{Address: srv.URL, Token: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Put(context.Background(), "/v1/config/"+url.PathEscape("a/b"), url.Values{"cas": {"7"}}, map[string]string{"Kind": "k"})
	if err != nil {
		t.Fatal(err)
	}

	checks := []struct {
		name, got, want string
	}{
		{"method", got.Method, "PUT"},
		{"escaped path", got.URL.EscapedPath(), "/v1/config/a%2Fb"},
		{"query", got.URL.RawQuery, "cas=7"},
		{"token", got.Header.Get("X-Consul-Token"), "s3cret"},
		{"content type", got.Header.Get("Content-Type"), "application/json"},
		{"body", gotBody, `{"Kind":"k"}`},
		{"response body", string(resp.Body), `{"ok":true}`},
	}
	for _, tt := range checks {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
	if resp.Index != 42 {
		t.Errorf("got index %d, want 42", resp.Index)
	}
}

func TestClientNoTokenNoBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if v, ok := r.Header["X-Consul-Token"]; ok {
			t.Errorf("got X-Consul-Token %q, want none", v)
		}
		if v := r.Header.Get("Content-Type"); v != "" {
			t.Errorf("got Content-Type %q, want none", v)
		}
	}))
	defer srv.Close()
	c, err := NewClient(ClientConfig{Address: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Get(context.Background(), "/v1/agent/members", nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Index != 0 {
		t.Errorf("got index %d, want 0", resp.Index)
	}
}

func TestClientStatusError(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		want   string
	}{
		{
			name:   "body trimmed",
			status: 400,
			body:   "Services[0].Consumers[0]: expected an object\n",
			want:   "Unexpected response code: 400 (Services[0].Consumers[0]: expected an object)",
		},
		{
			name:   "empty body",
			status: 403,
			want:   "Unexpected response code: 403",
		},
		{
			name:   "not found",
			status: 404,
			body:   `Peering not found for "x"`,
			want:   `Unexpected response code: 404 (Peering not found for "x")`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			c, err := NewClient(ClientConfig{Address: srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Get(context.Background(), "/v1/x", nil)
			var serr *StatusError
			if !errors.As(err, &serr) {
				t.Fatalf("got %v (%T), want a *StatusError", err, err)
			}
			if serr.StatusCode != tt.status {
				t.Errorf("got status %d, want %d", serr.StatusCode, tt.status)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// refusedAddr returns a loopback address nothing listens on.
func refusedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestClientConnectionRefused(t *testing.T) {
	addr := refusedAddr(t)
	c, err := NewClient(ClientConfig{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Get(context.Background(), "/v1/agent/members", nil)
	var cerr *ConnectError
	if !errors.As(err, &cerr) {
		t.Fatalf("got %v (%T), want a *ConnectError", err, err)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("got %v, want it to wrap ECONNREFUSED", err)
	}
	want := "could not reach peerd at http://" + addr + ": is the agent running? set -http-addr or PEERD_HTTP_ADDR"
	if got := err.Error(); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestClientTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)

	c, err := NewClient(ClientConfig{Address: srv.URL, Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Get(context.Background(), "/v1/agent/members", nil)
	if err == nil {
		t.Fatal("got nil error, want a timeout")
	}
	var cerr *ConnectError
	if errors.As(err, &cerr) {
		t.Errorf("got a *ConnectError for a slow agent, want a plain timeout: %v", err)
	}
	var nerr net.Error
	if !errors.As(err, &nerr) || !nerr.Timeout() {
		t.Errorf("got %v, want a timeout error", err)
	}
}
