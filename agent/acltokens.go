package agent

import (
	"fmt"
	"github.com/peerd/peerd/internal/sockets"
	"net/http"
	"path/filepath"
	"time"

	"github.com/peerd/peerd/agent/httpapi"
	"github.com/peerd/peerd/internal/acl"
)

// The agent's side of the ACL system: its tokens (kept under -data-dir
// with acl.enable_token_persistence), the DNS token, and the metrics
// listener that is not behind the HTTP API's ACLs.

// aclTokens are the agent's tokens from cfg.ACL.Tokens; with token
// persistence (outside dev mode) those set through PUT /v1/agent/token/*
// are kept in <data-dir>/acl-tokens.json and win on the next start.
func aclTokens(cfg Config) (*httpapi.Tokens, error) {
	file := ""
	if cfg.ACL.EnableTokenPersistence && !cfg.Dev && cfg.DataDir != "" {
		file = filepath.Join(cfg.DataDir, httpapi.TokensFile)
	}
	t := cfg.ACL.Tokens
	return httpapi.NewTokens(httpapi.AgentTokens{Default: t.Default, Agent: t.Agent, AgentRecovery: t.AgentRecovery}, file)
}

// dnsAuthorizer is DNS's view of the ACLs: the DNS token (the dns token,
// else the default one, else anonymous) resolved on each query. Nil when
// ACLs are off, or when no resolver is wired (everything answered).
func dnsAuthorizer(resolver httpapi.ACLResolver, tokens *httpapi.Tokens) func() (acl.Enforcer, error) {
	if resolver == nil || !resolver.Enabled() {
		return nil
	}
	return func() (acl.Enforcer, error) { return resolver.Enforcer(tokens.DNS()) }
}

// startMetricsListener serves /metrics without ACLs on cfg.MetricsAddr
// (telemetry.prometheus_addr), for a scraper on a private address.
func (a *Agent) startMetricsListener(addr string, h http.Handler) error {
	ln, err := sockets.Or(a.cfg.Sockets).Listen(a.runCtx, nil, "metrics", "tcp", addr)
	if err != nil {
		return fmt.Errorf("listen for metrics on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	a.metricsLn = ln
	a.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	a.watchHTTP(a.metrics)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := serveError(a.metrics.Serve(ln)); err != nil {
			a.log.Error("metrics listener stopped", "err", err)
		}
	}()
	return nil
}

// MetricsAddr returns the address of the metrics listener ("" = none).
func (a *Agent) MetricsAddr() string {
	if a.metricsLn == nil {
		return ""
	}
	return a.metricsLn.Addr().String()
}

// ACLTokens returns the agent's tokens: its own calls use Agent(), DNS
// uses DNS().
func (a *Agent) ACLTokens() *httpapi.Tokens { return a.aclTokens }
