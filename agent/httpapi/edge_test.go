package httpapi

import (
	"crypto/tls"
	"mime"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/peerd/peerd/internal/weborigin"
)

// newTestEdge returns an edge whose API counts the requests that reach it.
func newTestEdge(t *testing.T, cfg EdgeConfig) (*Edge, *int) {
	t.Helper()
	reached := new(int)
	e, err := NewEdge(cfg, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*reached++
		w.WriteHeader(http.StatusOK)
	}))
	if err != nil {
		t.Fatal(err)
	}
	return e, reached
}

func TestEdge(t *testing.T) {
	reg := prometheus.NewRegistry()
	e, reached := newTestEdge(t, EdgeConfig{
		NodeName:       "Node-1",
		AllowedOrigins: []string{"https://UI.example.com:443", "http://ops.example.com:8080"},
		AllowedHosts:   []string{"consul.example.com"},
		Registry:       reg,
	})
	tests := []struct {
		name                      string
		method, host, origin, ctt string
		tls                       bool
		want                      int
		reason                    string
	}{
		// The attacks: each must be refused before the API sees it.
		{name: "cross-origin PUT", method: "PUT", host: "127.0.0.1:8500", origin: "https://evil.example", want: 403, reason: ReasonOrigin},
		{name: "cross-origin DELETE", method: "DELETE", host: "localhost:8500", origin: "http://localhost:3000", want: 403, reason: ReasonOrigin},
		{name: "null origin POST", method: "POST", host: "127.0.0.1:8500", origin: "null", want: 403, reason: ReasonOrigin},
		{name: "same host other scheme", method: "PUT", host: "127.0.0.1:8500", origin: "https://127.0.0.1:8500", want: 403, reason: ReasonOrigin},
		{name: "text/plain POST", method: "POST", host: "127.0.0.1:8500", ctt: "text/plain", want: 415, reason: ReasonContentType},
		{name: "text/plain with charset, same origin", method: "POST", host: "127.0.0.1:8500", origin: "http://127.0.0.1:8500", ctt: "Text/Plain; charset=utf-8", want: 415, reason: ReasonContentType},
		{name: "form PUT", method: "PUT", host: "127.0.0.1:8500", ctt: "application/x-www-form-urlencoded", want: 415, reason: ReasonContentType},
		{name: "multipart POST", method: "POST", host: "127.0.0.1:8500", ctt: "multipart/form-data; boundary=x", want: 415, reason: ReasonContentType},
		{name: "malformed content type", method: "POST", host: "127.0.0.1:8500", ctt: "text/plain;;=", want: 415, reason: ReasonContentType},
		{name: "rebinding GET", method: "GET", host: "evil.example", want: 421, reason: ReasonHost},
		{name: "rebinding GET with port", method: "GET", host: "evil.example:8500", want: 421, reason: ReasonHost},
		{name: "rebinding PUT", method: "PUT", host: "attacker.localhost.evil", want: 421, reason: ReasonHost},
		{name: "malformed host", method: "GET", host: "127.0.0.1:85:00", want: 421, reason: ReasonHost},
		{name: "no host", method: "GET", host: "", want: 421, reason: ReasonHost},

		// What must keep working.
		{name: "GET by IP", method: "GET", host: "127.0.0.1:8500", want: 200},
		{name: "GET by IPv6", method: "GET", host: "[::1]:8500", want: 200},
		{name: "GET by pod IP", method: "GET", host: "10.1.2.3:8500", want: 200},
		{name: "GET by localhost", method: "GET", host: "localhost:8500", want: 200},
		{name: "GET by localhost, trailing dot", method: "GET", host: "LOCALHOST.:8500", want: 200},
		{name: "GET by node name", method: "GET", host: "node-1:8500", want: 200},
		{name: "GET by allowed host", method: "GET", host: "Consul.Example.com", want: 200},
		{name: "cross-origin GET (the browser hides the answer)", method: "GET", host: "127.0.0.1:8500", origin: "https://evil.example", want: 200},
		{name: "CLI PUT without body", method: "PUT", host: "127.0.0.1:8500", want: 200},
		{name: "CLI PUT JSON", method: "PUT", host: "127.0.0.1:8500", ctt: "application/json; charset=utf-8", want: 200},
		{name: "snapshot restore", method: "PUT", host: "127.0.0.1:8500", ctt: "application/octet-stream", want: 200},
		{name: "same-origin PUT", method: "PUT", host: "127.0.0.1:8500", origin: "http://127.0.0.1:8500", ctt: "application/json", want: 200},
		{name: "same-origin PUT default port", method: "PUT", host: "localhost", origin: "http://localhost:80", ctt: "application/json", want: 200},
		{name: "same-origin PUT over https", method: "PUT", host: "127.0.0.1:8501", origin: "https://127.0.0.1:8501", tls: true, want: 200},
		{name: "allowed origin PUT", method: "PUT", host: "127.0.0.1:8500", origin: "https://ui.example.com", ctt: "application/json", want: 200},
		{name: "allowed origin with port", method: "DELETE", host: "127.0.0.1:8500", origin: "http://OPS.example.com:8080", want: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := *reached
			beforeCount := counterValue(t, e.refusals.WithLabelValues(listenerOf(tt.tls), tt.reason))
			r := httptest.NewRequest(tt.method, "/v1/agent/service/register", nil)
			r.Host = tt.host
			if tt.tls {
				r.TLS = &tls.ConnectionState{}
			} else {
				r.TLS = nil
			}
			if tt.origin != "" {
				r.Header.Set("Origin", tt.origin)
			}
			if tt.ctt != "" {
				r.Header.Set("Content-Type", tt.ctt)
			}
			w := httptest.NewRecorder()
			e.ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Fatalf("got %d (%s), want %d", w.Code, strings.TrimSpace(w.Body.String()), tt.want)
			}
			if tt.want != 200 {
				if *reached != before {
					t.Fatal("the refused request reached the API")
				}
				if got := counterValue(t, e.refusals.WithLabelValues(listenerOf(tt.tls), tt.reason)); got != beforeCount+1 {
					t.Errorf("peerd_http_refusals_total{reason=%q}: got %v, want %v", tt.reason, got, beforeCount+1)
				}
				return
			}
			if *reached != before+1 {
				t.Fatal("the request did not reach the API")
			}
		})
	}
}

func listenerOf(tls bool) string {
	if tls {
		return "https"
	}
	return "http"
}

// The refusals name the origin or host and the setting that allows it.
func TestEdgeMessages(t *testing.T) {
	e, _ := newTestEdge(t, EdgeConfig{})
	for _, tt := range []struct {
		host, origin, ctt string
		want              []string
	}{
		{host: "127.0.0.1:8500", origin: "https://evil.example", want: []string{`"https://evil.example"`, "-http-allowed-origins https://evil.example", "allowed_origins"}},
		{host: "evil.example:8500", want: []string{`"evil.example:8500"`, "-http-allowed-hosts evil.example", "allowed_hosts"}},
		{host: "127.0.0.1:8500", ctt: "text/plain", want: []string{"text/plain", "application/json"}},
	} {
		r := httptest.NewRequest("POST", "/v1/peering/token", nil)
		r.Host = tt.host
		if tt.origin != "" {
			r.Header.Set("Origin", tt.origin)
		}
		if tt.ctt != "" {
			r.Header.Set("Content-Type", tt.ctt)
		}
		w := httptest.NewRecorder()
		e.ServeHTTP(w, r)
		for _, want := range tt.want {
			if !strings.Contains(w.Body.String(), want) {
				t.Errorf("%s %s %s: got %q, want it to contain %q", tt.host, tt.origin, tt.ctt, w.Body.String(), want)
			}
		}
	}
}

// An allowed origin gets CORS answers, so its page can use the API; any
// other origin gets none, so the browser hides the API's answers from it.
func TestEdgeCORS(t *testing.T) {
	e, reached := newTestEdge(t, EdgeConfig{AllowedOrigins: []string{"https://ui.example.com"}})
	pre := httptest.NewRequest("OPTIONS", "/v1/agent/service/register", nil)
	pre.Host = "127.0.0.1:8500"
	pre.Header.Set("Origin", "https://ui.example.com")
	pre.Header.Set("Access-Control-Request-Method", "PUT")
	w := httptest.NewRecorder()
	e.ServeHTTP(w, pre)
	if w.Code != http.StatusNoContent || w.Header().Get("Access-Control-Allow-Origin") != "https://ui.example.com" ||
		!strings.Contains(w.Header().Get("Access-Control-Allow-Headers"), "X-Consul-Token") {
		t.Fatalf("preflight of an allowed origin: got %d %v", w.Code, w.Header())
	}
	if *reached != 0 {
		t.Fatal("the preflight reached the API")
	}
	pre.Header.Set("Origin", "https://evil.example")
	w = httptest.NewRecorder()
	e.ServeHTTP(w, pre)
	if got := w.Header().Get("Access-Control-Allow-Origin"); got != "" {
		t.Fatalf("preflight of another origin: got Access-Control-Allow-Origin %q, want none", got)
	}
}

func TestEdgeConfigRefused(t *testing.T) {
	for _, o := range []string{"*", "null", "ui.example.com", "https://ui.example.com/path", "ftp://x", "https://"} {
		if _, err := NewEdge(EdgeConfig{AllowedOrigins: []string{o}}, http.NotFoundHandler()); err == nil {
			t.Errorf("allowed origin %q: got no error", o)
		}
	}
	for _, h := range []string{"", "*.example.com", "example.com:8500", "http://example.com", "a..b"} {
		if _, err := NewEdge(EdgeConfig{AllowedHosts: []string{h}}, http.NotFoundHandler()); err == nil {
			t.Errorf("allowed host %q: got no error", h)
		}
	}
}

// FuzzEdge feeds the edge arbitrary Host, Origin and Content-Type values:
// it must never panic, and a request it lets through must satisfy what the
// checks promise.
func FuzzEdge(f *testing.F) {
	for _, s := range [][4]string{
		{"PUT", "127.0.0.1:8500", "https://evil.example", "application/json"},
		{"POST", "localhost", "", "text/plain; charset=utf-8"},
		{"GET", "[::1]:8500", "null", ""},
		{"DELETE", "evil.example:80", "http://evil.example", "multipart/form-data; boundary=--"},
		{"PUT", "node-1", "http://node-1", "application/octet-stream"},
		{"PATCH", "[fe80::1%25eth0]:1", "http://[::1]:8500", "text/plain;;"},
		{"POST", "ui.example.com:8500", "https://ui.example.com", `text/plain; a="b`},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	e, err := NewEdge(EdgeConfig{NodeName: "node-1", AllowedOrigins: []string{"https://ui.example.com"}, AllowedHosts: []string{"ui.example.com"}},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, method, host, origin, ctt string) {
		if method == "" || strings.ContainsAny(method, " \t\r\n()<>@,;:\\\"/[]?={}") {
			return
		}
		r := httptest.NewRequest(http.MethodGet, "/v1/agent/service/register", nil)
		r.Method, r.Host = method, host
		if origin != "" {
			r.Header["Origin"] = []string{origin}
		}
		if ctt != "" {
			r.Header["Content-Type"] = []string{ctt}
		}
		w := httptest.NewRecorder()
		e.ServeHTTP(w, r)
		if w.Code != http.StatusTeapot {
			return // refused
		}
		h, ok := weborigin.SplitHost(host)
		if !ok || h == "" {
			t.Fatalf("Host %q passed", host)
		}
		if safe := method == "GET" || method == "HEAD" || method == "OPTIONS"; safe {
			return
		}
		if ctt != "" {
			mt, _, err := mime.ParseMediaType(ctt)
			if err != nil || slices.Contains(simpleTypes, mt) {
				t.Fatalf("%s with Content-Type %q passed", method, ctt)
			}
		}
		if origin != "" {
			norm, err := weborigin.Parse(origin)
			if err != nil || (norm != ownOrigin(r) && norm != "https://ui.example.com") {
				t.Fatalf("%s from origin %q to Host %q passed", method, origin, host)
			}
		}
	})
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// BenchmarkEdge is the cost the checks add to a request that passes them
// (a same-origin JSON PUT, the most checked kind), against the bare
// handler in the same run.
func BenchmarkEdge(b *testing.B) {
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	e, err := NewEdge(EdgeConfig{NodeName: "node-1", AllowedOrigins: []string{"https://ui.example.com"}}, next)
	if err != nil {
		b.Fatal(err)
	}
	r := httptest.NewRequest("PUT", "/v1/agent/service/register", nil)
	r.Host = "127.0.0.1:8500"
	r.Header.Set("Origin", "http://127.0.0.1:8500")
	r.Header.Set("Content-Type", "application/json; charset=utf-8")
	w := httptest.NewRecorder()
	for _, bb := range []struct {
		name string
		h    http.Handler
	}{{"bare", next}, {"edge", e}} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				bb.h.ServeHTTP(w, r)
			}
		})
	}
}
