package l7proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/peerd/peerd/catalog/state"
)

func TestLifecycle(t *testing.T) {
	st, err := state.NewStore()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		NodeName: "n", Datacenter: "dc", View: func() *state.Store { return st },
		Signer: SignerFunc(func(context.Context, LeafRequest) (string, error) {
			return "", errors.New("no CA in this test")
		}),
		GatewayListener: ln, Logger: slog.New(slog.DiscardHandler),
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := p.Start(); err == nil {
		t.Fatal("a second Start succeeded, want an error")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := range 2 {
		if err := p.Close(ctx); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Fatal("the gateway still accepts after Close")
	}

	// A proxy closed before it started does not start.
	p2, err := New(Config{NodeName: "n", Datacenter: "dc", View: cfg.View, Signer: cfg.Signer, Logger: cfg.Logger})
	if err != nil {
		t.Fatal(err)
	}
	if err := p2.Close(ctx); err != nil {
		t.Fatalf("Close before Start: %v", err)
	}
	if err := p2.Start(); err == nil {
		t.Fatal("Start after Close succeeded, want an error")
	}
}
