package sockets

import (
	"context"
	"net"
	"testing"

	"github.com/cloudflare/tableflip"
)

// TestHandover checks what a reload relies on inside one process: a
// listener closed during a reload (Freeze) keeps its socket, and the same
// key opens that very socket again with its queued connections; one
// closed outside a reload really stops listening.
func TestHandover(t *testing.T) {
	upg, err := tableflip.New(tableflip.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer upg.Stop()
	h := NewHandover(upg.Fds)
	ctx := context.Background()

	ln, err := h.Listen(ctx, nil, "http", "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := h.Freeze(); err != nil {
		t.Fatalf("Freeze: %v", err)
	}
	ln.Close()
	// The socket still listens: a client connects into its backlog.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s after closing the listener during a reload: %v", addr, err)
	}
	defer c.Close()
	again, err := h.Listen(ctx, nil, "http", "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if again.Addr().String() != addr {
		t.Fatalf("reopened %s, want the same socket %s", again.Addr(), addr)
	}
	acc, err := again.Accept()
	if err != nil {
		t.Fatalf("accept the connection that queued meanwhile: %v", err)
	}
	acc.Close()

	// Outside a reload, closing releases the socket: the port binds again.
	h.Thaw()
	again.Close()
	ln2, err := h.Listen(ctx, nil, "upstream", "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := ln2.Addr().String()
	ln2.Close()
	free, err := net.Listen("tcp", up)
	if err != nil {
		t.Fatalf("an upstream listener closed outside a reload still holds %s: %v", up, err)
	}
	free.Close()
	if keys := h.Keys(); len(keys) != 0 {
		t.Errorf("sockets still held after both were closed outside a reload: %v", keys)
	}

	// Packet sockets are kept and reopened by key.
	pc, err := h.ListenPacket(ctx, nil, "dns", "udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := pc.LocalAddr().String()
	pc.Close()
	pc2, err := h.ListenPacket(ctx, nil, "dns", "udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc2.Close()
	if pc2.LocalAddr().String() != p {
		t.Errorf("DNS socket reopened on %s, want %s", pc2.LocalAddr(), p)
	}
	if got, want := Key("http", "127.0.0.1:8500"), "http@127.0.0.1:8500"; got != want {
		t.Errorf("Key = %q, want %q", got, want)
	}
}
