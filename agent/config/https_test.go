package config

import (
	"bytes"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Consul's keys set the HTTPS API: ports.https, addresses.https, and the
// tls block, https over defaults; flags win over both.
func TestHTTPSFileKeys(t *testing.T) {
	file := writeFile(t, "tls.hcl", `
ports {
  http  = -1
  https = 8501
}
addresses {
  http  = "0.0.0.0"
  https = "0.0.0.0"
}
tls {
  defaults {
    ca_file         = "/etc/peerd/ca.pem"
    cert_file       = "/etc/peerd/default.pem"
    key_file        = "/etc/peerd/default-key.pem"
    tls_min_version = "TLSv1_3"
  }
  https {
    cert_file       = "/etc/peerd/https.pem"
    key_file        = "/etc/peerd/https-key.pem"
    verify_incoming = true
  }
}
http_config {
  allowed_origins = ["https://ui.example.com"]
  allowed_hosts   = ["consul.example.com"]
}
`)
	var stderr bytes.Buffer
	cfg, err := Parse([]string{"-dev", "-config-file", file, "-http-allowed-hosts", "peerd.example.com"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, got, want string }{
		{"http-addr", cfg.HTTPAddr, ""},
		{"https-addr", cfg.HTTPSAddr, "0.0.0.0:8501"},
		{"https-ca-file", cfg.HTTPSCAFile, "/etc/peerd/ca.pem"},
		{"https-cert-file", cfg.HTTPSCertFile, "/etc/peerd/https.pem"},
		{"https-key-file", cfg.HTTPSKeyFile, "/etc/peerd/https-key.pem"},
		{"https-tls-min-version", cfg.HTTPSTLSMinVersion, "1.3"},
		{"http-allowed-origins", strings.Join(cfg.HTTPAllowedOrigins, ","), "https://ui.example.com"},
		{"http-allowed-hosts", strings.Join(cfg.HTTPAllowedHosts, ","), "peerd.example.com"},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, c.got, c.want)
		}
	}
	if !cfg.HTTPSVerifyIncoming {
		t.Error("https-verify-incoming: got false, want true from tls.https")
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("valid HTTPS configuration: %v", err)
	}
}

func TestHTTPSDefaults(t *testing.T) {
	var stderr bytes.Buffer
	for _, args := range [][]string{{"-dev"}, {"-data-dir", t.TempDir()}} {
		cfg, err := Parse(args, &stderr)
		if err != nil {
			t.Fatal(err)
		}
		if v, err := cfg.HTTPSMinVersion(); cfg.HTTPSAddr != "" || err != nil || v != tls.VersionTLS12 || cfg.HTTPAddr == "" {
			t.Errorf("%v: got https %q min %x http %q, want HTTPS off, TLS 1.2, HTTP on", args, cfg.HTTPSAddr, v, cfg.HTTPAddr)
		}
	}
	// addresses.https alone does not turn HTTPS on: it needs a port.
	file := writeFile(t, "a.hcl", "addresses {\n  https = \"0.0.0.0\"\n}\n")
	cfg, err := Parse([]string{"-dev", "-config-file", file}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPSAddr != "" {
		t.Errorf("addresses.https alone: got https-addr %q, want none", cfg.HTTPSAddr)
	}
	cfg, err = Parse([]string{"-dev", "-http-addr", "", "-https-addr", "127.0.0.1:0"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil || cfg.HTTPAddr != "" {
		t.Errorf("-http-addr \"\" with HTTPS: got http %q, %v; want HTTP off and valid", cfg.HTTPAddr, err)
	}
}

func TestHTTPSValidate(t *testing.T) {
	tests := []struct {
		name string
		args []string
		file string
		want string
	}{
		{name: "no API at all", args: []string{"-http-addr", ""}, want: "-http-addr: no HTTP API at all"},
		{name: "cert without key", args: []string{"-https-addr", "127.0.0.1:0", "-https-cert-file", "c.pem"}, want: "-https-cert-file: give the certificate and its key together"},
		{name: "no certificate without cluster trust", args: []string{"-https-addr", "127.0.0.1:0", "-internal-tls=false"}, want: "-https-addr: HTTPS needs a certificate"},
		{name: "verify_incoming without a CA", args: []string{"-https-addr", "127.0.0.1:0", "-internal-tls=false", "-https-cert-file", "c", "-https-key-file", "k", "-https-verify-incoming"}, want: "-https-verify-incoming: client certificates need a CA"},
		{name: "tls files without HTTPS", file: "tls {\n https {\n cert_file = \"c\"\n key_file = \"k\"\n }\n}\n", want: "tls.https.cert_file: no HTTPS listener"},
		{name: "bad min version", args: []string{"-https-tls-min-version", "1.1"}, want: "-https-tls-min-version \"1.1\": want 1.2 or 1.3"},
		{name: "wildcard origin", args: []string{"-http-allowed-origins", "*"}, want: "-http-allowed-origins:"},
		{name: "host with port", args: []string{"-http-allowed-hosts", "example.com:8500"}, want: "-http-allowed-hosts: host \"example.com:8500\""},
		{name: "bad https-addr", args: []string{"-https-addr", "8501"}, want: "-https-addr: \"8501\": want host:port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"-dev"}, tt.args...)
			if tt.file != "" {
				args = append(args, "-config-file", writeFile(t, "f.hcl", tt.file))
			}
			var stderr bytes.Buffer
			cfg, err := Parse(args, &stderr)
			if err == nil {
				err = cfg.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestTLSBlockRefusals(t *testing.T) {
	tests := []struct{ body, want string }{
		{"tls {\n internal_rpc {\n verify_incoming = true\n }\n}\n", "tls.internal_rpc: peerd's internal channels use cluster trust"},
		{"tls {\n https {\n verify_outgoing = true\n }\n}\n", "tls.https.verify_outgoing: unknown key; tls.https takes ca_file"},
		{"tls {\n defaults {\n tls_min_version = \"TLSv1_0\"\n }\n}\n", "tls.defaults.tls_min_version \"TLSv1_0\": want TLSv1_2 or TLSv1_3"},
		{"tls {\n nope = 1\n}\n", "tls.nope: unknown key; tls takes defaults and https"},
		{"http_config {\n allow_write_http_from = []\n}\n", "http_config.allow_write_http_from: unknown key"},
	}
	for _, tt := range tests {
		c := DevConfig()
		err := c.LoadFiles(writeFile(t, "f.hcl", tt.body))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: got %v, want an error containing %q", tt.body, err, tt.want)
		}
	}
}
