package agent

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"

	"github.com/peerd/peerd/catalog/state"
)

func dnsQuery(addr, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	c := &dns.Client{Timeout: 2 * time.Second}
	resp, _, err := c.Exchange(m, addr)
	return resp, err
}

// Two peered dev clusters: B exports billing; A gives it a virtual IP and
// answers both DNS forms for it.
func TestDNSAndVirtualIPsAcrossPeers(t *testing.T) {
	if testing.Short() {
		t.Skip("two-cluster test: skipped with -short")
	}
	a := startMeshCluster(t, "a", nil)
	b := startMeshCluster(t, "b", nil)
	a.peerWith(t, b)
	b.register(t, &api.AgentServiceRegistration{ID: "billing-1", Name: "billing", Port: 9090, Address: "127.0.0.1"})
	b.export(t, "a", "billing")
	a.waitImportedPassing(t, "billing", "b", 1)

	dnsAddr := a.agent.DNSAddr()
	if dnsAddr == "" {
		t.Fatal("dev agent has no DNS server")
	}
	var banner bytes.Buffer
	a.agent.PrintBanner(&banner)
	if !strings.Contains(banner.String(), "       dns: "+dnsAddr+"\n") {
		t.Fatalf("banner lacks the DNS address:\n%s", banner.String())
	}

	eventually(t, 10*time.Second, "billing.virtual.b.peerd. answers the virtual IP", func() error {
		resp, err := dnsQuery(dnsAddr, "billing.virtual.b.peerd.", dns.TypeA)
		if err != nil {
			return err
		}
		if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
			return fmt.Errorf("got %s %v", dns.RcodeToString[resp.Rcode], resp.Answer)
		}
		if ip := resp.Answer[0].(*dns.A).A.String(); ip != "240.0.0.1" {
			return fmt.Errorf("got %s, want 240.0.0.1 (the lowest of 240.0.0.0/4)", ip)
		}
		return nil
	})
	resp, err := dnsQuery(dnsAddr, "Billing.Virtual.B.Peerd.", dns.TypeAAAA)
	if err != nil || len(resp.Answer) != 1 || resp.Answer[0].(*dns.AAAA).AAAA.String() != "fd70:6565:7264::1" {
		t.Fatalf("AAAA: got %v, %v", resp, err)
	}

	gwHost, gwPort, _ := net.SplitHostPort(b.agent.GatewayAddr())
	resp, err = dnsQuery(dnsAddr, "billing.service.b.peer.peerd.", dns.TypeA)
	if err != nil || resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 || resp.Answer[0].(*dns.A).A.String() != gwHost {
		t.Fatalf("peer form A: got %v, %v; want B's gateway %s", resp, err, gwHost)
	}
	resp, err = dnsQuery(dnsAddr, "billing.service.b.peer.peerd.", dns.TypeSRV)
	if err != nil || len(resp.Answer) != 1 || strconv.Itoa(int(resp.Answer[0].(*dns.SRV).Port)) != gwPort {
		t.Fatalf("peer form SRV: got %v, %v; want B's gateway port %s", resp, err, gwPort)
	}
	resp, err = dnsQuery(dnsAddr, "nothing.virtual.b.peerd.", dns.TypeA)
	if err != nil || resp.Rcode != dns.RcodeNameError {
		t.Fatalf("unknown name: got %v, %v; want NXDOMAIN", resp, err)
	}
	// B answers its own billing in Consul's basic form.
	resp, err = dnsQuery(b.agent.DNSAddr(), "billing.service.peerd.", dns.TypeA)
	if err != nil || len(resp.Answer) != 1 || resp.Answer[0].(*dns.A).A.String() != "127.0.0.1" {
		t.Fatalf("local form: got %v, %v", resp, err)
	}

	// The HTTP API shows the virtual IP where Consul does, and lists it.
	entries, _, err := a.api.Catalog().Service("billing", "", &api.QueryOptions{Peer: "b"})
	if err != nil || len(entries) != 1 {
		t.Fatalf("catalog service: got %v, %v", entries, err)
	}
	if v := entries[0].ServiceTaggedAddresses["virtual"]; v.Address != "240.0.0.1" || v.Port != 9090 {
		t.Fatalf("virtual tagged address: got %+v, want 240.0.0.1:9090", v)
	}
	var vips []state.VirtualIP
	if err := getJSON("http://"+a.agent.HTTPAddr()+"/v1/virtual-ips", &vips); err != nil {
		t.Fatal(err)
	}
	if len(vips) != 1 || vips[0].Peer != "b" || vips[0].Service != "billing" || vips[0].IPv4 != "240.0.0.1" {
		t.Fatalf("/v1/virtual-ips: got %+v", vips)
	}
}

func TestDNSConfigValidationAndFiles(t *testing.T) {
	cfg := DevConfig()
	cfg.DNSAddr, cfg.Domain, cfg.Recursors = "nope", ".", []string{"dns.google"}
	cfg.VirtualIPv4CIDR, cfg.VirtualIPv6CIDR = "240.0.0.1/4", "10.0.0.0/8"
	err := cfg.Validate()
	for _, want := range []string{"-dns-addr", "-domain", "-recursor", "-virtual-ip-cidr", "-virtual-ip6-cidr"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want an error naming %s", err, want)
		}
	}

	dir := t.TempDir()
	file := dir + "/dns.hcl"
	writeFile(t, file, `
domain = "Consul"
recursors = ["1.1.1.1", "127.0.0.1:5353"]
virtual_ip_cidr = "10.240.0.0/16"
virtual_ip6_cidr = ""
ports { dns = 8653 }
addresses { dns = "0.0.0.0" }
encrypt = "`+testGossipKey+`"
`)
	c := DefaultConfig()
	if err := c.LoadFiles(file); err != nil {
		t.Fatal(err)
	}
	if c.DNSAddr != "0.0.0.0:8653" || c.Domain != "Consul" || len(c.Recursors) != 2 || c.VirtualIPv4CIDR != "10.240.0.0/16" || c.VirtualIPv6CIDR != "" {
		t.Fatalf("got %+v", c)
	}
	if err := c.ValidateFiles(); err != nil {
		t.Fatal(err)
	}
	writeFile(t, file, `ports { dns = -1 }`)
	if err := c.LoadFiles(file); err != nil || c.DNSAddr != "" {
		t.Fatalf("ports.dns = -1: got %q, %v; want DNS off", c.DNSAddr, err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestVirtualIPRangeOverlappingAnInterfaceIsRefused(t *testing.T) {
	cfg := DevConfig()
	cfg.NodeName, cfg.LogLevel = "overlap", "error"
	cfg.VirtualIPv4CIDR = "127.0.0.0/16" // the loopback interface's 127.0.0.1/8
	a, err := startAgent(cfg)
	if err == nil {
		_ = a.Close(context.Background())
		t.Fatal("started with a virtual IP range on the loopback network")
	}
	if !strings.Contains(err.Error(), "-virtual-ip-cidr") || !strings.Contains(err.Error(), "overlaps") {
		t.Fatalf("got %v, want an error naming -virtual-ip-cidr and the overlap", err)
	}
}
