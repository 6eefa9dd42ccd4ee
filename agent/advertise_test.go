package agent

import (
	"net"
	"testing"

	"github.com/peerd/peerd/catalog"
)

// fakeListener reports a fixed address; advertised only reads Addr.
type fakeListener struct {
	net.Listener
	addr *net.TCPAddr
}

func (l fakeListener) Addr() net.Addr { return l.addr }

func TestAdvertised(t *testing.T) {
	tests := []struct {
		name, listen, bind, advertise, want string
	}{
		{"all interfaces take the bind address", "0.0.0.0:8502", "10.0.0.5", "", "10.0.0.5:8502"},
		{"all interfaces behind NAT", "0.0.0.0:8443", "10.0.0.5", "203.0.113.7", "203.0.113.7:8443"},
		{"the bind address behind NAT", "10.0.0.5:8503", "10.0.0.5", "203.0.113.7", "203.0.113.7:8503"},
		{"another explicit address stays", "10.0.1.9:8502", "10.0.0.5", "203.0.113.7", "10.0.1.9:8502"},
		{"loopback on a multi-host node is unreachable", "127.0.0.1:8500", "10.0.0.5", "", ""},
		{"loopback on a loopback node", "127.0.0.1:43121", "127.0.0.1", "", "127.0.0.1:43121"},
		{"the port listened on, never a default", "10.0.0.5:18502", "10.0.0.5", "", "10.0.0.5:18502"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, err := net.ResolveTCPAddr("tcp", tt.listen)
			if err != nil {
				t.Fatal(err)
			}
			cc := catalog.Config{BindAddr: tt.bind, AdvertiseAddr: tt.advertise}
			if got := advertised(fakeListener{addr: addr}, cc); got != tt.want {
				t.Fatalf("advertised(%s) = %q, want %q", tt.listen, got, tt.want)
			}
		})
	}
}

func TestOnBindAddr(t *testing.T) {
	tests := []struct{ addr, bind, want string }{
		{":8502", "10.0.0.5", "10.0.0.5:8502"},
		{"127.0.0.1:8502", "10.0.0.5", "127.0.0.1:8502"},
		{"0.0.0.0:8503", "10.0.0.5", "0.0.0.0:8503"},
		{":0", "127.0.0.1", "127.0.0.1:0"},
	}
	for _, tt := range tests {
		if got := onBindAddr(tt.addr, tt.bind); got != tt.want {
			t.Errorf("onBindAddr(%q, %q) = %q, want %q", tt.addr, tt.bind, got, tt.want)
		}
	}
}
