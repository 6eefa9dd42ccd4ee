package checks

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/decode"
)

type recorder struct {
	mu      sync.Mutex
	results map[string][]string
}

func (r *recorder) notify(id, status, output string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.results == nil {
		r.results = map[string][]string{}
	}
	r.results[id] = append(r.results[id], status)
}

func (r *recorder) waitFor(t *testing.T, id, status string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		got := r.results[id]
		r.mu.Unlock()
		if len(got) > 0 && got[len(got)-1] == status {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t.Fatalf("check %s: got statuses %v, want last %s", id, r.results[id], status)
}

func ms(n int) decode.Duration { return decode.Duration(time.Duration(n) * time.Millisecond) }

func TestHTTPCheck(t *testing.T) {
	code := http.StatusOK
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.WriteHeader(code)
	}))
	defer srv.Close()
	var rec recorder
	r := New(rec.notify, nil)
	defer r.Close(context.Background())
	if err := r.Add("h", state.CheckType{HTTP: srv.URL, Interval: ms(100)}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		code int
		want string
	}{
		{http.StatusOK, state.HealthPassing},
		{http.StatusTooManyRequests, state.HealthWarning},
		{http.StatusInternalServerError, state.HealthCritical},
		{http.StatusNoContent, state.HealthPassing},
	}
	for _, tt := range tests {
		mu.Lock()
		code = tt.code
		mu.Unlock()
		rec.waitFor(t, "h", tt.want)
	}
}

func TestTCPCheck(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	var rec recorder
	r := New(rec.notify, nil)
	defer r.Close(context.Background())
	if err := r.Add("t", state.CheckType{TCP: addr, Interval: ms(100)}); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "t", state.HealthPassing)
	ln.Close()
	rec.waitFor(t, "t", state.HealthCritical)
}

func TestTTLCheckExpires(t *testing.T) {
	var rec recorder
	r := New(rec.notify, nil)
	defer r.Close(context.Background())
	if err := r.Add("ttl", state.CheckType{TTL: ms(200)}); err != nil {
		t.Fatal(err)
	}
	if err := r.UpdateTTL("ttl", state.HealthPassing, "ok"); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "ttl", state.HealthPassing)
	rec.waitFor(t, "ttl", state.HealthCritical) // nobody renewed it
	if err := r.UpdateTTL("nope", state.HealthPassing, ""); err == nil {
		t.Fatal("updating an unknown check succeeded")
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		def  state.CheckType
		ok   bool
	}{
		{"ttl", state.CheckType{TTL: ms(1000)}, true},
		{"http", state.CheckType{HTTP: "http://127.0.0.1/health", Interval: ms(1000)}, true},
		{"nothing", state.CheckType{}, false},
		{"two kinds", state.CheckType{TTL: ms(1000), TCP: "127.0.0.1:1"}, false},
		{"http without interval", state.CheckType{HTTP: "http://x/"}, false},
		{"http not a url", state.CheckType{HTTP: "x/y", Interval: ms(1000)}, false},
		{"tcp without port", state.CheckType{TCP: "host", Interval: ms(1000)}, false},
		{"bad status", state.CheckType{TTL: ms(1000), Status: "green"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := Validate(&tt.def); (err == nil) != tt.ok {
				t.Fatalf("got %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestCloseStopsChecks(t *testing.T) {
	var rec recorder
	r := New(rec.notify, nil)
	if err := r.Add("t", state.CheckType{TCP: "127.0.0.1:1", Interval: ms(100)}); err != nil {
		t.Fatal(err)
	}
	if err := r.Add("ttl", state.CheckType{TTL: ms(100)}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := range 2 {
		if err := r.Close(ctx); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	if err := r.Add("late", state.CheckType{TTL: ms(100)}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Add after Close: got %v, want ErrClosed", err)
	}
	if err := r.UpdateTTL("ttl", state.HealthPassing, ""); !errors.Is(err, ErrUnknownCheck) {
		t.Fatalf("UpdateTTL after Close: got %v, want ErrUnknownCheck", err)
	}
}
