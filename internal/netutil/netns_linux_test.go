package netutil

import (
	"net"
	"testing"
)

func TestNetnsCookieSameNamespace(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, err := NetnsCookie(ln.(*net.TCPListener))
	if err != nil {
		t.Fatal(err)
	}
	b, err := NetnsCookie(c.(*net.TCPConn))
	if err != nil {
		t.Fatal(err)
	}
	if a == 0 || a != b {
		t.Fatalf("cookies %d and %d: want one non-zero cookie for one namespace", a, b)
	}
}
