package l7proxy

import (
	"log/slog"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestParseSNI(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("11111111-2222-3333-4444-555555555555.peerd")
	cases := []struct {
		sni          string
		svc, peer    string
		internal, ok bool
	}{
		{"billing.default.default.a.external." + td.Name(), "billing", "a", false, true},
		{"billing.default.dc1.internal." + td.Name(), "billing", "", true, true},
		{"billing.default.default.a.external.other.peerd", "", "", false, false},
		{"billing.other.default.a.external." + td.Name(), "", "", false, false},
		{"billing.default.p2.a.external." + td.Name(), "", "", false, false},
		{".default.default.a.external." + td.Name(), "", "", false, false},
		{"billing.default.default..external." + td.Name(), "", "", false, false},
		{"billing.default.default.a.internal." + td.Name(), "", "", false, false},
		{"billing.default.dc1.external." + td.Name(), "", "", false, false},
		{td.Name(), "", "", false, false},
		{"", "", "", false, false},
	}
	for _, c := range cases {
		svc, peer, internal, ok := parseSNI(c.sni, td)
		if svc != c.svc || peer != c.peer || internal != c.internal || ok != c.ok {
			t.Errorf("parseSNI(%q) = %q %q %v %v, want %q %q %v %v", c.sni, svc, peer, internal, ok, c.svc, c.peer, c.internal, c.ok)
		}
	}
}

func FuzzParseSNI(f *testing.F) {
	td := spiffeid.RequireTrustDomainFromString("11111111-2222-3333-4444-555555555555.peerd")
	f.Add("billing.default.default.a.external." + td.Name())
	f.Add("billing.default.dc1.internal." + td.Name())
	f.Add("....")
	f.Fuzz(func(t *testing.T, sni string) {
		svc, peer, internal, ok := parseSNI(sni, td)
		if !ok {
			if svc != "" || peer != "" || internal {
				t.Fatalf("refused SNI %q returned %q %q %v", sni, svc, peer, internal)
			}
			return
		}
		if svc == "" || (!internal && peer == "") || (internal && peer != "") {
			t.Fatalf("accepted SNI %q gave service %q peer %q internal %v", sni, svc, peer, internal)
		}
	})
}

func testProxy(t *testing.T) *Proxy {
	t.Helper()
	cfg := Config{NodeName: "n", Datacenter: "dc", Logger: slog.New(slog.DiscardHandler)}
	cfg.setDefaults()
	p := &Proxy{cfg: cfg, log: cfg.Logger, m: newMetrics(nil)}
	p.lb.p = p
	return p
}

func TestBalancerEjectsAfterConsecutiveFailures(t *testing.T) {
	p := testProxy(t)
	now := time.Unix(1000, 0)
	p.cfg.Now = func() time.Time { return now }
	a := &endpoint{addr: "a:1", service: "s", stats: p.lb.statsFor("a")}
	b := &endpoint{addr: "b:1", service: "s", stats: p.lb.statsFor("b")}
	eps := []*endpoint{a, b}
	for i := 0; i < p.cfg.OutlierFailures-1; i++ {
		p.lb.failed(a)
	}
	if a.stats.ejected(now) {
		t.Fatal("ejected before OutlierFailures failures")
	}
	p.lb.failed(a)
	if !a.stats.ejected(now) {
		t.Fatal("not ejected after OutlierFailures failures")
	}
	for i := 0; i < 50; i++ {
		if got := p.lb.pick("t", "least_request", eps, nil); got != b {
			t.Fatalf("picked %s while a is ejected", got.addr)
		}
	}
	// Every endpoint ejected: use them anyway rather than fail.
	for i := 0; i < p.cfg.OutlierFailures; i++ {
		p.lb.failed(b)
	}
	if got := p.lb.pick("t", "round_robin", eps, nil); got == nil {
		t.Fatal("no endpoint when all are ejected")
	}
	// The second ejection in a row lasts twice as long.
	now = now.Add(p.cfg.OutlierEjection + time.Second)
	if a.stats.ejected(now) {
		t.Fatal("still ejected after the ejection time")
	}
	for i := 0; i < p.cfg.OutlierFailures; i++ {
		p.lb.failed(a)
	}
	if !a.stats.ejected(now.Add(p.cfg.OutlierEjection + time.Second)) {
		t.Fatal("the second ejection is not longer")
	}
	p.lb.succeeded(a)
	if a.stats.failures.Load() != 0 || a.stats.ejections.Load() != 0 {
		t.Fatal("success does not reset the counters")
	}
}

func TestBalancerPolicies(t *testing.T) {
	p := testProxy(t)
	var eps []*endpoint
	for _, k := range []string{"a", "b", "c"} {
		eps = append(eps, &endpoint{addr: k, stats: p.lb.statsFor(k)})
	}
	seen := map[string]int{}
	for i := 0; i < 30; i++ {
		seen[p.lb.pick("rr", "round_robin", eps, nil).addr]++
	}
	if seen["a"] != 10 || seen["b"] != 10 || seen["c"] != 10 {
		t.Fatalf("round robin: %v", seen)
	}
	eps[0].stats.active.Store(100)
	eps[1].stats.active.Store(100)
	// Two random choices include the idle c two times in three, and then
	// c must win: c gets about 2/3 of the picks, never fewer than half.
	idle := 0
	for i := 0; i < 600; i++ {
		if p.lb.pick("lr", "least_request", eps, nil) == eps[2] {
			idle++
		}
	}
	if idle < 300 {
		t.Fatalf("least request chose the idle endpoint %d times of 600", idle)
	}
	tried := map[string]bool{eps[2].key(): true, eps[0].key(): true}
	if got := p.lb.pick("lr", "random", eps, tried); got != eps[1] {
		t.Fatalf("tried endpoints were picked: %v", got.addr)
	}
	if got := p.lb.pick("lr", "random", eps, map[string]bool{eps[0].key(): true, eps[1].key(): true, eps[2].key(): true}); got != nil {
		t.Fatal("an endpoint was picked when all were tried")
	}
}
