package workloads

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/hashicorp/go-memdb"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/peerd/peerd/l7proxy"
)

type nopDataplane struct{}

func (nopDataplane) SetWorkloadNetns(uint64) error    { return nil }
func (nopDataplane) DeleteWorkloadNetns(uint64) error { return nil }
func (nopDataplane) ReadNetnsEvent(ctx context.Context) (NetnsEvent, error) {
	<-ctx.Done()
	return NetnsEvent{}, ctx.Err()
}

type nopProxy struct{}

func (nopProxy) ServeTransparent(net.Listener) error                { return nil }
func (nopProxy) ServeUpstream(l7proxy.Upstream, net.Listener) error { return nil }
func (nopProxy) ServiceUpstreams(memdb.WatchSet, string) ([]l7proxy.Upstream, error) {
	return nil, nil
}
func (nopProxy) ServiceOfCgroup(uint64) (string, bool) { return "", false }

func TestCheckAddr(t *testing.T) {
	for _, ok := range []string{"127.0.0.1:53", "[::1]:53", "0.0.0.0:15001"} {
		if err := CheckAddr(ok); err != nil {
			t.Errorf("CheckAddr(%s): %v", ok, err)
		}
	}
	for bad, want := range map[string]string{
		"127.0.0.1":      "want ip:port",
		"localhost:53":   "not an IP address",
		"127.0.0.1:0":    "not 1-65535",
		"127.0.0.1:dns":  "not 1-65535",
		"[::1]:70000":    "not 1-65535",
		"127.0.0.1:53:1": "want ip:port",
	} {
		err := CheckAddr(bad)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), bad) {
			t.Errorf("CheckAddr(%s) = %v, want an error naming it and saying %q", bad, err, want)
		}
	}
}

func TestNewValidates(t *testing.T) {
	good := Config{CgroupPath: "/sys/fs/cgroup/x", TransparentAddrs: []string{"127.0.0.1:15001"}, Dataplane: nopDataplane{}, Proxy: nopProxy{}}
	for name, mod := range map[string]func(*Config){
		"no cgroup":       func(c *Config) { c.CgroupPath = "" },
		"no transparent":  func(c *Config) { c.TransparentAddrs = nil },
		"no dataplane":    func(c *Config) { c.Dataplane = nil },
		"no proxy":        func(c *Config) { c.Proxy = nil },
		"bad dns address": func(c *Config) { c.DNSAddrs = []string{"127.0.0.1"} },
	} {
		cfg := good
		mod(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
	reg := prometheus.NewRegistry()
	cfg := good
	cfg.Registerer = reg
	if _, err := New(cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg); err == nil {
		t.Error("a second manager registered the same metrics")
	}
}

func TestRunFailsOnAMissingCgroup(t *testing.T) {
	cfg := Config{CgroupPath: t.TempDir() + "/missing", TransparentAddrs: []string{"127.0.0.1:15001"}, Dataplane: nopDataplane{}, Proxy: nopProxy{}}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "-cgroup-path") {
		t.Fatalf("Run = %v, want an error pointing at -cgroup-path", err)
	}
}
