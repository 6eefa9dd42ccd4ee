package cli

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// newTLSAgent is an HTTPS agent answering /v1/agent/members, and the file
// holding its CA (httptest's certificate names example.com and 127.0.0.1).
func newTLSAgent(t *testing.T) (*httptest.Server, string) {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(membersJSON))
	}))
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return srv, ca
}

func TestHTTPS(t *testing.T) {
	srv, ca := newTLSAgent(t)
	hostPort := strings.TrimPrefix(srv.URL, "https://")
	tests := []struct {
		name    string
		environ map[string]string
		args    []string
		wantErr string
	}{
		{name: "flags", args: []string{"-http-addr", srv.URL, "-ca-file", ca}},
		{name: "PEERD_CACERT", environ: map[string]string{EnvHTTPAddr: srv.URL, EnvCACert: ca}},
		{name: "Consul's variables", environ: map[string]string{EnvConsulHTTPAddr: hostPort, EnvConsulHTTPSSL: "true", EnvConsulCACert: ca}},
		{name: "server name", args: []string{"-http-addr", srv.URL, "-ca-file", ca, "-tls-server-name", "example.com"}},
		{name: "server name from the environment", environ: map[string]string{EnvHTTPAddr: srv.URL, EnvCACert: ca, EnvTLSServerName: "example.com"}},
		{name: "no CA", args: []string{"-http-addr", srv.URL}, wantErr: "-ca-file"},
		{name: "wrong server name", args: []string{"-http-addr", srv.URL, "-ca-file", ca, "-tls-server-name", "api.other.peerd"}, wantErr: "-tls-server-name"},
		{name: "plain http to https", args: []string{"-http-addr", "http://" + hostPort}, wantErr: "Unexpected response code: 400"},
		{name: "CA file missing", args: []string{"-http-addr", srv.URL, "-ca-file", filepath.Join(t.TempDir(), "none.pem")}, wantErr: "read the CA file"},
		{name: "cert without key", args: []string{"-http-addr", srv.URL, "-ca-file", ca, "-client-cert", ca}, wantErr: "-client-cert and -client-key"},
		{name: "bad CONSUL_HTTP_SSL", environ: map[string]string{EnvConsulHTTPSSL: "yes please"}, wantErr: "CONSUL_HTTP_SSL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := runPeerctl(t, tt.environ, "", append(tt.args, "members")...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !strings.Contains(out, "node-a") {
				t.Fatalf("got %q, %v; want the members", out, err)
			}
		})
	}
}
