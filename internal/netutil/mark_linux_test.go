package netutil_test

import (
	"net"
	"testing"

	"github.com/peerd/peerd/internal/netutil"
	"github.com/peerd/peerd/internal/testutil"
)

func TestMarkerSetsMark(t *testing.T) {
	testutil.RequireRoot(t, "setting SO_MARK needs CAP_NET_ADMIN")
	denied := false
	m := netutil.NewMarker(0x70d, func(error) { denied = true })
	lc := net.ListenConfig{Control: m.Control}
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := net.Dialer{Control: m.Control}
	c, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := netutil.Mark(c)
	if err != nil || got != 0x70d || denied || !m.Enabled() {
		t.Fatalf("mark %#x, err %v, denied %v", got, err, denied)
	}
	// A listener opened elsewhere (the agent's gateway) is not marked:
	// MarkConn marks what it accepts.
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	c2, err := net.Dial("tcp", plain.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	s, err := plain.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, _ := netutil.Mark(s); got != 0 {
		t.Fatalf("accepted socket already marked %#x", got)
	}
	m.MarkConn(s)
	if got, err := netutil.Mark(s); err != nil || got != 0x70d {
		t.Fatalf("accepted socket mark %#x, %v", got, err)
	}
}

func TestMarkerZeroIsNoop(t *testing.T) {
	m := netutil.NewMarker(0, nil)
	d := net.Dialer{Control: m.Control}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if m.Enabled() {
		t.Fatal("mark 0 reported enabled")
	}
}
