package local

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/peerd/peerd/agent/checks"
	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/decode"
)

// syncRecorder is an Applier that counts the full syncs of the node.
type syncRecorder struct {
	mu    sync.Mutex
	syncs int
}

func (r *syncRecorder) Apply(_ context.Context, cmd *catalog.Command) (*catalog.ApplyResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cmd.Type == catalog.CmdSyncNode {
		r.syncs++
	}
	return &catalog.ApplyResult{OK: true}, nil
}

func (r *syncRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.syncs
}

func TestStartSyncsAndCloseStops(t *testing.T) {
	rec := &syncRecorder{}
	s, err := New(Config{Node: state.Node{Node: "n1", Address: "127.0.0.1"}, SyncInterval: time.Hour,
		Logger: slog.New(slog.DiscardHandler)}, rec)
	if err != nil {
		t.Fatal(err)
	}
	if rec.count() != 0 {
		t.Fatalf("New synced %d times, want 0 before Start", rec.count())
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err == nil {
		t.Fatal("a second Start succeeded, want an error")
	}
	deadline := time.Now().Add(5 * time.Second)
	for rec.count() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no full sync within 5 s of Start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := range 2 {
		if err := s.Close(ctx); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	n := rec.count()
	s.Kick()
	time.Sleep(50 * time.Millisecond)
	if got := rec.count(); got != n {
		t.Fatalf("got %d full syncs after Close and a Kick, want %d", got, n)
	}
	err = s.AddCheck(ctx, &state.CheckType{CheckID: "late", Name: "late", TTL: decode.Duration(time.Minute)}, false)
	if !errors.Is(err, checks.ErrClosed) {
		t.Fatalf("AddCheck after Close: got %v, want checks.ErrClosed", err)
	}
}
