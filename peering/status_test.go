package peering

import (
	"errors"
	"testing"
	"time"

	"github.com/peerd/peerd/catalog/state"
)

func TestDerivedState(t *testing.T) {
	now := time.Unix(1000, 0)
	clock := now
	tr := newTracker(func() time.Time { return clock })
	const timeout = 2 * time.Minute
	derived := func(stored string) string { return tr.get("p").State(stored, clock, timeout) }

	if got := derived(state.PeeringEstablishing); got != state.PeeringEstablishing {
		t.Fatalf("never connected: got %s, want ESTABLISHING", got)
	}
	tr.connected("p")
	tr.heartbeat("p")
	if got := derived(state.PeeringEstablishing); got != state.PeeringActive {
		t.Fatalf("first heartbeat: got %s, want ACTIVE", got)
	}
	clock = now.Add(timeout + time.Second)
	if got := derived(state.PeeringActive); got != state.PeeringFailing {
		t.Fatalf("no heartbeat for longer than the timeout: got %s, want FAILING", got)
	}
	tr.heartbeat("p")
	if got := derived(state.PeeringActive); got != state.PeeringActive {
		t.Fatalf("heartbeat again: got %s, want ACTIVE", got)
	}
	tr.disconnected("p", errors.New("connection reset"))
	st := tr.get("p")
	if got := st.State(state.PeeringActive, clock, timeout); got != state.PeeringFailing || st.LastError != "connection reset" {
		t.Fatalf("disconnected: got %s / %q, want FAILING with the error", got, st.LastError)
	}
	tr.connected("p")
	if got := tr.get("p").Reconnects; got != 1 {
		t.Fatalf("got %d reconnects, want 1", got)
	}
	for _, stored := range []string{state.PeeringPending, state.PeeringDeleting, state.PeeringTerminated} {
		if got := derived(stored); got != stored {
			t.Errorf("stored %s: got %s, want it unchanged", stored, got)
		}
	}
}
