package config

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "agent.hcl")
	if err := os.WriteFile(file, []byte(`
datacenter = "east"
node_name  = "from-file"
log_level  = "debug"
ports {
  http = 9500
}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, got string)
	}{
		{"dev picks free loopback ports", []string{"-dev"}, func(t *testing.T, got string) {
			want := "http=127.0.0.1:0 grpc=127.0.0.1:0 serf=0 server=0 bind=127.0.0.1 server-mode=true expect=1"
			if !strings.Contains(got, want) {
				t.Errorf("got %s, want %s", got, want)
			}
		}},
		{"-http-addr wins in dev mode", []string{"-dev", "-http-addr", "127.0.0.1:8600"}, func(t *testing.T, got string) {
			if !strings.Contains(got, "http=127.0.0.1:8600 grpc=127.0.0.1:0") {
				t.Errorf("got %s, want the given http and a free grpc port", got)
			}
		}},
		{"file values apply", []string{"-data-dir", dir, "-config-file", file}, func(t *testing.T, got string) {
			if !strings.Contains(got, "dc=east node=from-file") || !strings.Contains(got, "http=127.0.0.1:9500") || !strings.Contains(got, "log=debug") {
				t.Errorf("got %s, want the file's dc, node, port and log level", got)
			}
		}},
		{"flags win over files", []string{"-data-dir", dir, "-config-file", file, "-datacenter", "west", "-log-level", "warn"}, func(t *testing.T, got string) {
			if !strings.Contains(got, "dc=west node=from-file") || !strings.Contains(got, "log=warn") {
				t.Errorf("got %s, want the flags' dc and log level over the file's", got)
			}
		}},
		{"repeatable retry-join and node-meta", []string{"-data-dir", dir, "-retry-join", "a", "-retry-join", "b", "-node-meta", "rack:r1"}, func(t *testing.T, got string) {
			if !strings.Contains(got, "join=[a b] meta=map[rack:r1]") {
				t.Errorf("got %s, want both joins and the meta", got)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			cfg, err := Parse(tt.args, &stderr)
			if err != nil {
				t.Fatalf("parse %v: %v", tt.args, err)
			}
			got := fmt.Sprintf("dc=%s node=%s http=%s grpc=%s serf=%d server=%d bind=%s server-mode=%t expect=%d log=%s join=%v meta=%v",
				cfg.Datacenter, cfg.NodeName, cfg.HTTPAddr, cfg.GRPCAddr, cfg.SerfLANPort, cfg.ServerPort, cfg.BindAddr,
				cfg.Server, cfg.BootstrapExpect, cfg.LogLevel, cfg.RetryJoin, cfg.NodeMeta)
			tt.check(t, got)
		})
	}
}

func TestParseRejectsBadInput(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"-bogus"}, "bogus"},
		{"stray argument", []string{"-dev", "extra"}, `unexpected argument "extra"`},
		{"dev with data dir", []string{"-dev", "-data-dir", "/tmp/x"}, "drop -data-dir"},
		{"bad node meta", []string{"-dev", "-node-meta", "nocolon"}, "key:value"},
		{"missing config file", []string{"-config-file", "/nonexistent/peerd.hcl"}, "/nonexistent/peerd.hcl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			cfg, err := Parse(tt.args, &stderr)
			if err == nil {
				err = cfg.Validate() // -dev with -data-dir is refused here
			}
			if err == nil || !strings.Contains(err.Error()+stderr.String(), tt.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}

func TestPeeringHeartbeatFlagsAndFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "peering.hcl")
	if err := os.WriteFile(file, []byte("peering {\n  heartbeat_interval = \"5s\"\n  heartbeat_timeout = \"30s\"\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cfg, err := Parse([]string{"-dev", "-config-file", file, "-peering-heartbeat-timeout", "45s"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.PeeringHeartbeatInterval.String() != "5s" || cfg.PeeringHeartbeatTimeout.String() != "45s" {
		t.Fatalf("got interval %s timeout %s, want 5s from the file and 45s from the flag",
			cfg.PeeringHeartbeatInterval, cfg.PeeringHeartbeatTimeout)
	}
}

func TestPeeringStaleStreamTimeout(t *testing.T) {
	file := filepath.Join(t.TempDir(), "peering.hcl")
	if err := os.WriteFile(file, []byte("peering {\n  heartbeat_interval = \"5s\"\n  stale_stream_timeout = \"20s\"\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cfg, err := Parse([]string{"-dev", "-config-file", file}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.PeeringStaleStreamTimeout.String(); got != "20s" {
		t.Fatalf("got stale stream timeout %s, want 20s from the file", got)
	}
	for _, bad := range []string{"5s", "3m", "-1s"} { // not past the interval, past the 2m timeout, negative
		stderr.Reset()
		c, err := Parse([]string{"-dev", "-config-file", file, "-peering-stale-stream-timeout", bad}, &stderr)
		if err == nil {
			err = c.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), "peering-stale-stream-timeout") {
			t.Errorf("-peering-stale-stream-timeout %s: got %v, want an error naming the flag", bad, err)
		}
	}
}

func TestPeeringQuotaFlagsAndFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "peering.hcl")
	body := "peering {\n  max_imported_services = 50\n  max_in_flight_bytes = 1048576\n  allow_local_gateways = false\n}\n"
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cfg, err := Parse([]string{"-dev", "-config-file", file, "-peering-max-messages-per-second", "10"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	q := cfg.PeeringQuotas
	if q.MaxImportedServices != 50 || q.MaxInFlightBytes != 1<<20 || q.MaxMessagesPerSecond != 10 || q.MaxImportedInstances != 250_000 || cfg.PeeringAllowLocalGateways {
		t.Fatalf("got %+v, allow local gateways %v; want 50 services and 1 MiB from the file, 10/s from the flag, the default instances, and the file's false over -dev's true",
			q, cfg.PeeringAllowLocalGateways)
	}
	if cfg, err = Parse([]string{"-data-dir", t.TempDir()}, &stderr); err != nil || cfg.PeeringAllowLocalGateways {
		t.Fatalf("non-dev: got allow local gateways %v (%v), want false", cfg.PeeringAllowLocalGateways, err)
	}
}

func TestAutopilotFlagsAndFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "autopilot.hcl")
	body := "autopilot {\n  server_stabilization_time = \"30s\"\n  cleanup_dead_servers = false\n  max_trailing_logs = 100\n}\n"
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cfg, err := Parse([]string{"-dev", "-config-file", file, "-dead-server-reap-time", "1h"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ServerStabilizationTime != 30*time.Second || cfg.CleanupDeadServers || cfg.MaxTrailingLogs != 100 ||
		cfg.DeadServerReapTime != time.Hour || cfg.LastContactThreshold != 200*time.Millisecond {
		t.Fatalf("got stabilization %v cleanup %v trailing %d reap %v contact %v, want 30s false 100 (file) 1h (flag) 200ms (default)",
			cfg.ServerStabilizationTime, cfg.CleanupDeadServers, cfg.MaxTrailingLogs, cfg.DeadServerReapTime, cfg.LastContactThreshold)
	}
	def := DefaultConfig()
	if !def.CleanupDeadServers || def.DeadServerReapTime != 72*time.Hour || def.ServerStabilizationTime != 0 {
		t.Fatalf("defaults: cleanup %v reap %v stabilization %v, want true 72h 0 (the catalog's 10s)",
			def.CleanupDeadServers, def.DeadServerReapTime, def.ServerStabilizationTime)
	}
	bad, err := Parse([]string{"-dev", "-server-stabilization-time", "-1s"}, &stderr)
	if err == nil {
		err = bad.Validate()
	}
	if err == nil || !strings.Contains(err.Error(), "server-stabilization-time") {
		t.Fatalf("negative stabilization time: got %v, want an error naming server-stabilization-time", err)
	}
}
