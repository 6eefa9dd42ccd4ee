package peering

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/identity"
	"github.com/peerd/peerd/peering/pbpeerstream"
)

func TestCheckGateway(t *testing.T) {
	local := map[netip.Addr]bool{netip.MustParseAddr("10.0.0.7"): true, netip.MustParseAddr("fd00::7"): true}
	tests := []struct {
		addr       string
		allowLocal bool
		want       string // "" = accepted
	}{
		{"", false, ""},
		{"10.0.0.8", false, ""},
		{"192.168.1.1", false, ""},
		{"2001:db8::1", false, ""},
		{"127.0.0.1", false, "loopback"},
		{"127.255.0.9", false, "loopback"},
		{"::1", false, "loopback"},
		{"::ffff:127.0.0.1", false, "loopback"},
		{"169.254.169.254", false, "link-local"},
		{"fe80::1", false, "link-local"},
		{"224.0.0.251", false, "link-local"},
		{"239.0.0.1", false, "multicast"},
		{"ff05::2", false, "multicast"},
		{"0.0.0.0", false, "unspecified"},
		{"::", false, "unspecified"},
		{"10.0.0.7", false, "this cluster's node addresses"},
		{"::ffff:10.0.0.7", false, "this cluster's node addresses"},
		{"fd00::7", false, "this cluster's node addresses"},
		{"gw.example.com", false, "not an IP address"},
		{"127.0.0.1:8443", false, "not an IP address"},
		{"127.0.0.1", true, ""},
		{"10.0.0.7", true, ""},
		{"localhost", true, "not an IP address"},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			err := checkGateway(tt.addr, importChecks{allowLocal: tt.allowLocal, local: local})
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("got %v, want accepted", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestTokenTrustDomain(t *testing.T) {
	for _, tt := range []struct {
		tok  Token
		want string
	}{
		{Token{TrustDomain: "a.peerd", ServerName: "server.dc1.peering.a.peerd"}, "a.peerd"},
		{Token{ServerName: "server.dc1.peering.11111111-2222-3333-4444-555555555555.consul"}, "11111111-2222-3333-4444-555555555555.consul"},
		{Token{}, ""},
	} {
		if got := tokenTrustDomain(&tt.tok); got != tt.want {
			t.Errorf("%+v: got %q, want %q", tt.tok, got, tt.want)
		}
	}
}

// FuzzValidateImport feeds arbitrary instances through the import checks
// and the registration they become. An instance accepted must keep to the
// peer's trust domain, have a gateway that is not local (when local ones
// are refused), and register no reserved meta key and only bounded meta.
func FuzzValidateImport(f *testing.F) {
	const td = "peer.peerd"
	add := func(in *pbpeerstream.ServiceInstance) {
		b, err := proto.Marshal(in)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
		f.Add(b, true)
	}
	base := func() *pbpeerstream.ServiceInstance {
		return &pbpeerstream.ServiceInstance{NodeName: "n1", ServiceId: "web-1", Service: "web", Port: 80, GatewayAddress: "10.0.0.1", GatewayPort: 8443,
			HealthStatus: pbpeerstream.HealthStatus_HEALTH_STATUS_PASSING, Sni: "web.default.default.a.external." + td,
			SpiffeIds: []string{"spiffe://" + td + "/ns/default/dc/dc1/svc/web"}, Meta: map[string]string{"team": "x"}}
	}
	add(base())
	for _, mod := range []func(*pbpeerstream.ServiceInstance){
		func(in *pbpeerstream.ServiceInstance) { in.GatewayAddress = "127.0.0.1" },
		func(in *pbpeerstream.ServiceInstance) { in.GatewayAddress = "::ffff:169.254.0.1" },
		func(in *pbpeerstream.ServiceInstance) { in.GatewayAddress = "10.9.9.9" },
		func(in *pbpeerstream.ServiceInstance) { in.Sni = "web.default.default.a.external.other.peerd" },
		func(in *pbpeerstream.ServiceInstance) { in.SpiffeIds = []string{"spiffe://other.peerd/x"} },
		func(in *pbpeerstream.ServiceInstance) {
			in.Meta = map[string]string{"peerd-cgroup": "/", "Peerd-Peer-Sni": "x", "ok": "v"}
		},
		func(in *pbpeerstream.ServiceInstance) { in.Meta = map[string]string{"bad key": "v"} },
	} {
		in := base()
		mod(in)
		add(in)
	}
	local := map[netip.Addr]bool{netip.MustParseAddr("10.9.9.9"): true}
	f.Fuzz(func(t *testing.T, data []byte, allowLocal bool) {
		var in pbpeerstream.ServiceInstance
		if err := proto.Unmarshal(data, &in); err != nil {
			return
		}
		c := importChecks{peerTD: td, allowLocal: allowLocal, local: local}
		reserved, err := validateInstance(&in, c)
		if err != nil {
			if err.Error() == "" || refusalCode(err) == 0 {
				t.Fatalf("refused with %q, code %v", err, refusalCode(err))
			}
			return
		}
		if sni := in.GetSni(); sni != "" && (!strings.HasSuffix(sni, "."+td) || identity.ValidateDNSName(sni) != nil) {
			t.Fatalf("accepted SNI %q outside %s", sni, td)
		}
		for _, s := range in.GetSpiffeIds() {
			if id, err := spiffeid.FromString(s); err != nil || id.TrustDomain().Name() != td {
				t.Fatalf("accepted SPIFFE ID %q outside %s", s, td)
			}
		}
		if gw := in.GetGatewayAddress(); gw != "" {
			ip, err := netip.ParseAddr(gw)
			if err != nil {
				t.Fatalf("accepted gateway %q, not an IP", gw)
			}
			ip = ip.Unmap()
			if !allowLocal && (ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() || local[ip]) {
				t.Fatalf("accepted local gateway %s", ip)
			}
		}
		req := importRequest("p", "dc9", &in)
		kept := 0
		for k, v := range req.Service.Meta {
			switch k {
			case MetaPeerSNI, MetaPeerSPIFFEIDs, MetaPeerProtocol:
				continue
			}
			kept++
			if reservedMetaKey(k) {
				t.Fatalf("registered reserved meta key %q", k)
			}
			if len(k) > maxImportMetaKey || len(v) > maxImportMetaValue {
				t.Fatalf("registered meta %q of %d bytes", k, len(v))
			}
		}
		if kept+reserved != len(in.GetMeta()) {
			t.Fatalf("kept %d meta keys and counted %d reserved, of %d", kept, reserved, len(in.GetMeta()))
		}
		if req.Service.Meta[MetaPeerSNI] != in.GetSni() {
			t.Fatalf("registered SNI %q, sent %q", req.Service.Meta[MetaPeerSNI], in.GetSni())
		}
	})
}

// The exporter does not send meta keys of local meaning (the terminator's
// cgroup claim): the peer would strip them, and count each.
func TestExportDropsReservedMeta(t *testing.T) {
	csn := state.CheckServiceNode{
		Node:    &state.Node{Node: "n1", Address: "10.0.0.1"},
		Service: &state.Service{ID: "web-1", Service: "web", Port: 80, Meta: map[string]string{"peerd-cgroup": "/sys/fs/cgroup/web", "team": "x"}},
	}
	in := exportInstance(csn, "http", spiffeid.RequireTrustDomainFromString("a.peerd"), "dc1", "b")
	if len(in.GetMeta()) != 1 || in.GetMeta()["team"] != "x" {
		t.Fatalf("exported meta: got %v, want team only", in.GetMeta())
	}
	if csn.Service.Meta["peerd-cgroup"] == "" {
		t.Fatal("the local registration's meta was changed")
	}
}
