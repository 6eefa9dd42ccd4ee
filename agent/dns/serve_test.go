package dns

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestServeExtraListeners(t *testing.T) {
	s := startServer(t, testStore(t), nil)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(pc, ln); err != nil {
		t.Fatal(err)
	}
	for network, addr := range map[string]string{"udp": pc.LocalAddr().String(), "tcp": ln.Addr().String()} {
		got := answers(query(t, addr, network, "billing.virtual.b.peerd.", dns.TypeA))
		if len(got) != 1 || got[0] != "240.0.0.1" {
			t.Errorf("%s on the extra listener: %v, want [240.0.0.1]", network, got)
		}
	}
	// The owner closes one pair; a second pair is closed by Close.
	pc.Close()
	ln.Close()
	pc2, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(pc2, ln2); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", ln2.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Error("the extra TCP listener still accepts after Close")
	}
	if _, err := pc2.WriteTo([]byte("x"), pc2.LocalAddr()); err == nil {
		t.Error("the extra UDP socket is still open after Close")
	}
	if err := s.Serve(nil, nil); err == nil {
		t.Error("Serve after Close: no error")
	}
}
