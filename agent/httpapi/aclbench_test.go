package httpapi

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/acl"
)

// compiledResolver is testResolver with every token compiled once, as
// aclresolve caches them: the benchmark measures enforcement and
// filtering, not parsing rules.
type compiledResolver map[string]acl.Enforcer

func (c compiledResolver) Enabled() bool { return true }

func (c compiledResolver) Enforcer(secret string) (acl.Enforcer, error) {
	e, ok := c[secret]
	if !ok {
		return acl.Enforcer{}, ErrACLNotFound
	}
	return e, nil
}

// BenchmarkACLCost is the authorisation cost per request: the same
// handler, in process (no network), with ACLs off and with ACLs on, in one
// run, for a catalog read that filters 100 services (GET
// /v1/catalog/services, every service visible by a service_prefix rule)
// and one instance list (GET /v1/health/service/web, 10 instances), and
// for the peering list (GET /v1/peerings, peering:read). acl-ratio is
// on/off.
func BenchmarkACLCost(b *testing.B) {
	node := startPeeringNode(b, "n", "dc1", true)
	var regs []*state.RegisterRequest
	for i := range 100 {
		regs = append(regs, &state.RegisterRequest{Node: &state.Node{Node: fmt.Sprintf("n%d", i%10), Address: "10.0.0.1"},
			Service: &state.Service{ID: fmt.Sprintf("s%d", i), Service: fmt.Sprintf("svc%d", i), Port: 80}})
	}
	for i := range 10 {
		regs = append(regs, &state.RegisterRequest{Node: &state.Node{Node: fmt.Sprintf("n%d", i), Address: "10.0.0.1"},
			Service: &state.Service{ID: fmt.Sprintf("web%d", i), Service: "web", Port: 80}})
	}
	for _, reg := range regs {
		if _, err := node.cluster.Apply(b.Context(), &catalog.Command{Type: catalog.CmdRegister, Register: reg}); err != nil {
			b.Fatal(err)
		}
	}
	p, err := acl.ParseRules(`service_prefix "" { policy = "read" }` + "\n" + `node_prefix "" { policy = "read" }` + "\n" + `peering = "read"`)
	if err != nil {
		b.Fatal(err)
	}
	resolver := compiledResolver{"reader": {Authorizer: acl.Chain(acl.NewPolicyAuthorizer(p), acl.DenyAll()), AccessorID: "reader"}}
	off, err := New(Config{Cluster: node.cluster, Local: node.local, Peering: node.peering})
	if err != nil {
		b.Fatal(err)
	}
	on, err := New(Config{Cluster: node.cluster, Local: node.local, Peering: node.peering, ACL: resolver})
	if err != nil {
		b.Fatal(err)
	}
	for _, path := range []string{"/v1/catalog/services", "/v1/health/service/web", "/v1/peerings"} {
		b.Run(path, func(b *testing.B) {
			run := func(h http.Handler, n int) time.Duration {
				start := time.Now()
				for range n {
					req := httptest.NewRequest("GET", path, nil)
					req.Header.Set("X-Consul-Token", "reader")
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					if rec.Code != 200 {
						b.Fatalf("%s: %d %s", path, rec.Code, rec.Body)
					}
				}
				return time.Since(start)
			}
			// Interleaved halves, so drift in the machine's load hits both.
			hOff, hOn := off.Handler(), on.Handler()
			var tOff, tOn time.Duration
			for i := 0; i < 2; i++ {
				tOff += run(hOff, b.N)
				tOn += run(hOn, b.N)
			}
			nsOff, nsOn := float64(tOff.Nanoseconds())/float64(2*b.N), float64(tOn.Nanoseconds())/float64(2*b.N)
			b.ReportMetric(nsOff, "off-ns/req")
			b.ReportMetric(nsOn, "acl-ns/req")
			b.ReportMetric(nsOn/nsOff, "acl-ratio")
		})
	}
}
