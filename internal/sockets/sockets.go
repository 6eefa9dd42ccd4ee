// Package sockets opens the listening sockets of a peerd agent, either
// directly or so that a reload can hand them to the next process.
//
// Every socket is opened under a key, "<role>@<address>" (for example
// "http@127.0.0.1:8500"), so two listeners on the same configured address
// (two ":0" in dev mode) stay apart, and a listener whose address changed
// in the new configuration is opened anew instead of inherited.
//
// Direct opens sockets with net.ListenConfig and nothing more. Handover
// (handover.go) takes the sockets a parent process passed (with
// github.com/cloudflare/tableflip) before opening new ones, and registers
// every socket it opens, so the next process inherits it in turn.
package sockets

import (
	"context"
	"net"
)

// Opener opens listening sockets. lc may carry Control (SO_MARK) and the
// MPTCP choice; an inherited socket keeps the options it was made with.
type Opener interface {
	Listen(ctx context.Context, lc *net.ListenConfig, role, network, addr string) (net.Listener, error)
	ListenPacket(ctx context.Context, lc *net.ListenConfig, role, network, addr string) (net.PacketConn, error)
}

// Direct opens every socket anew.
type Direct struct{}

// Listen opens a listener with lc (nil: the zero ListenConfig).
func (Direct) Listen(ctx context.Context, lc *net.ListenConfig, _, network, addr string) (net.Listener, error) {
	if lc == nil {
		lc = &net.ListenConfig{}
	}
	return lc.Listen(ctx, network, addr)
}

// ListenPacket opens a packet socket with lc (nil: the zero ListenConfig).
func (Direct) ListenPacket(ctx context.Context, lc *net.ListenConfig, _, network, addr string) (net.PacketConn, error) {
	if lc == nil {
		lc = &net.ListenConfig{}
	}
	return lc.ListenPacket(ctx, network, addr)
}

// Or returns o, or Direct when o is nil.
func Or(o Opener) Opener {
	if o == nil {
		return Direct{}
	}
	return o
}

// Key is the name a socket is handed over under.
func Key(role, addr string) string { return role + "@" + addr }
