//go:build linux

package l7

import (
	"bytes"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerd/peerd/internal/identity"
)

func echoTarget(t *testing.T, h http.Handler) Target {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return Target{Addr: strings.TrimPrefix(srv.URL, "http://"), Method: "POST", Body: bytes.Repeat([]byte{'b'}, 1024), WantBody: 1024}
}

func TestEchoHandler(t *testing.T) {
	srv := httptest.NewServer(EchoHandler(100))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(body) != 100 || resp.Header.Get(EchoHeader) != EchoValue {
		t.Errorf("GET: %s, %d bytes, %s=%q", resp.Status, len(body), EchoHeader, resp.Header.Get(EchoHeader))
	}
	resp, err = http.Post(srv.URL, "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello" {
		t.Errorf("POST answered %q, want the body back", body)
	}
	if err := ProbeEcho(strings.TrimPrefix(srv.URL, "http://"), 100); err != nil {
		t.Error(err)
	}
}

func TestClosedLoop(t *testing.T) {
	target := echoTarget(t, EchoHandler(1024))
	var starts, ends int
	res, err := ClosedLoop(target, 4, 50*time.Millisecond, 200*time.Millisecond, Window{
		Start: func() { starts++ },
		End:   func() { ends++ },
	})
	if err != nil {
		t.Fatal(err)
	}
	if starts != 1 || ends != 1 {
		t.Errorf("window callbacks: %d starts, %d ends", starts, ends)
	}
	if res.Errors != 0 || res.Completed == 0 || len(res.Latency) != res.Completed {
		t.Fatalf("%d completed, %d latencies, %d errors (%s)", res.Completed, len(res.Latency), res.Errors, res.FirstError)
	}
	if !slices.IsSorted(res.Latency) || res.RPS() <= 0 || res.Redials != 0 {
		t.Errorf("sorted %t, rps %v, redials %d", slices.IsSorted(res.Latency), res.RPS(), res.Redials)
	}
}

func TestClosedLoopBadAnswers(t *testing.T) {
	target := echoTarget(t, EchoHandler(1024))
	target.WantBody = 10
	if _, err := ClosedLoop(target, 1, 0, 50*time.Millisecond, Window{}); err == nil {
		t.Fatal("priming accepted an answer of the wrong size")
	}
	target = echoTarget(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusBadGateway)
	}))
	if _, err := ClosedLoop(target, 1, 0, 50*time.Millisecond, Window{}); err == nil || !strings.Contains(err.Error(), "502") {
		t.Fatalf("priming against a 502: %v", err)
	}
}

// A server that closes connections (Connection: close) costs redials, not
// errors.
func TestClosedLoopConnectionClose(t *testing.T) {
	var n atomic.Int64
	echo := EchoHandler(1024)
	target := echoTarget(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%3 == 0 {
			w.Header().Set("Connection", "close")
		}
		echo.ServeHTTP(w, r)
	}))
	res, err := ClosedLoop(target, 2, 0, 100*time.Millisecond, Window{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 0 || res.Redials == 0 {
		t.Errorf("%d errors (%s), %d redials", res.Errors, res.FirstError, res.Redials)
	}
}

func TestFixedRate(t *testing.T) {
	target := echoTarget(t, EchoHandler(1024))
	res, err := FixedRate(target, 500, 8, 200*time.Millisecond, Window{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Scheduled != 100 || res.Completed != 100 || res.Missed != 0 || res.Errors != 0 {
		t.Fatalf("scheduled %d, completed %d, missed %d, errors %d (%s)", res.Scheduled, res.Completed, res.Missed, res.Errors, res.FirstError)
	}
	if len(res.Latency) != 100 || len(res.Service) != 100 || len(res.Lag) != 100 {
		t.Errorf("samples: %d latency, %d service, %d lag", len(res.Latency), len(res.Service), len(res.Lag))
	}
	if res.Window < 198*time.Millisecond { // the last request is scheduled at 99 × 2 ms
		t.Errorf("window %s, shorter than the schedule", res.Window)
	}
}

// The server can do 50 requests/s on the one connection; offered 200/s,
// the requests queue, and their latency from the schedule shows it while the
// service time does not: coordinated omission is not hidden.
func TestFixedRateCountsQueueing(t *testing.T) {
	echo := EchoHandler(1024)
	target := echoTarget(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
		echo.ServeHTTP(w, r)
	}))
	res, err := FixedRate(target, 200, 1, 200*time.Millisecond, Window{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Completed != 40 || res.Errors != 0 {
		t.Fatalf("completed %d of %d, %d errors (%s)", res.Completed, res.Scheduled, res.Errors, res.FirstError)
	}
	lat, svc := Percentile(res.Latency, 99), Percentile(res.Service, 99)
	if lat < 400*time.Millisecond || svc > 200*time.Millisecond {
		t.Errorf("p99 from schedule %s (want >= 400ms), service p99 %s", lat, svc)
	}
}

func TestPercentile(t *testing.T) {
	d := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{50, 5}, {99, 10}, {100, 10}, {10, 1}, {1, 1}} {
		if got := Percentile(d, tc.p); got != tc.want {
			t.Errorf("p%v = %v, want %v", tc.p, got, tc.want)
		}
	}
	if Percentile(nil, 50) != 0 {
		t.Error("percentile of nothing")
	}
}

func TestParseStat(t *testing.T) {
	line := "4242 (a) (b c) S 1 4240 4240 0 -1 4194560 100 0 0 0 250 125 0 0 20 0 1 0 100 0 0\n"
	s, err := parseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if s.pgrp != 4240 || s.utime != 250 || s.stime != 125 {
		t.Errorf("%+v", s)
	}
	if _, err := parseStat([]byte("1 (x) S 1")); err == nil {
		t.Error("short line accepted")
	}
}

func TestProcCPU(t *testing.T) {
	deadline := time.Now().Add(30 * time.Millisecond)
	for x := 0; time.Now().Before(deadline); x++ {
		_ = x * x
	}
	cpu, err := ProcCPU(os.Getpid())
	if err != nil || cpu <= 0 {
		t.Errorf("ProcCPU(self) = %v, %v", cpu, err)
	}
}

func TestMintNginxPKI(t *testing.T) {
	dir := t.TempDir()
	p, err := MintNginxPKI(dir)
	if err != nil {
		t.Fatal(err)
	}
	read := func(path string) string {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	poolA, err := identity.Pool(read(p.RootA))
	if err != nil {
		t.Fatal(err)
	}
	poolB, err := identity.Pool(read(p.RootB))
	if err != nil {
		t.Fatal(err)
	}
	client, err := identity.ParseCertPEM(read(p.ClientCert))
	if err != nil {
		t.Fatal(err)
	}
	id, err := identity.VerifyLeaf([]*x509.Certificate{client}, poolA, time.Now(), x509.ExtKeyUsageClientAuth)
	if err != nil || id != p.ClientID {
		t.Errorf("client leaf against root A: %v, %v", id, err)
	}
	if _, err := identity.VerifyLeaf([]*x509.Certificate{client}, poolB, time.Now(), x509.ExtKeyUsageClientAuth); err == nil {
		t.Error("client leaf verified against root B")
	}
	server, err := identity.ParseCertPEM(read(p.ServerCert))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := server.Verify(x509.VerifyOptions{DNSName: p.SNI, Roots: poolB, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("server leaf for %s against root B: %v", p.SNI, err)
	}
	if !strings.HasPrefix(p.SNI, "billing.default.default.cluster-a.external.") || p.TrustDomainA == p.TrustDomainB {
		t.Errorf("SNI %s, trust domains %s and %s", p.SNI, p.TrustDomainA, p.TrustDomainB)
	}
	for _, path := range []string{p.ClientKey, p.ServerKey} {
		if _, err := identity.ParseKeyPEM(read(path)); err != nil {
			t.Error(err)
		}
	}
}

func TestMachineCPU(t *testing.T) {
	c, err := MachineCPU()
	if err != nil || c <= 0 {
		t.Errorf("MachineCPU() = %v, %v", c, err)
	}
}

func TestMerge(t *testing.T) {
	a := &Result{Kind: "fixed-rate", Conns: 2, Rate: 10, Window: time.Second, Completed: 2, Scheduled: 3, Missed: 1,
		Latency: []time.Duration{1, 5, 9}, Service: []time.Duration{1, 4}, Lag: []time.Duration{0, 1}}
	b := &Result{Kind: "fixed-rate", Conns: 2, Rate: 10, Window: time.Second, Completed: 3, Scheduled: 3, Errors: 1, FirstError: "x",
		Latency: []time.Duration{2, 3, 4}, Service: []time.Duration{2, 3, 4}, Lag: []time.Duration{1, 2, 3}}
	m := Merge(a, b)
	if m.Window != 2*time.Second || m.Completed != 5 || m.Scheduled != 6 || m.Missed != 1 || m.Errors != 1 || m.FirstError != "x" {
		t.Errorf("%+v", m)
	}
	if !slices.Equal(m.Latency, []time.Duration{1, 2, 3, 4, 5, 9}) || len(m.Service) != 5 || len(m.Lag) != 5 || m.RPS() != 2.5 {
		t.Errorf("latency %v, %d service, %d lag, rps %v", m.Latency, len(m.Service), len(m.Lag), m.RPS())
	}
	if Merge() != nil {
		t.Error("Merge() != nil")
	}
}

func TestHasGatewayFlag(t *testing.T) {
	dir := t.TempDir()
	for name, help := range map[string]string{"with": "  -gateway-addr string\n", "without": "  -grpc-addr string\n"} {
		path := dir + "/" + name
		script := "#!/bin/sh\ncat >&2 <<'EOF'\nUsage of peerd agent:\n" + help + "EOF\nexit 1\n"
		if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		if got := HasGatewayFlag(path); got != (name == "with") {
			t.Errorf("%s: HasGatewayFlag = %t", name, got)
		}
	}
}
