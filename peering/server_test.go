package peering

import (
	"context"
	"testing"
	"time"
)

func TestServerCloseEndsLeaderRoutines(t *testing.T) {
	tc := newTestCluster(t, "a", "dc1", nil)
	p := tc.peering
	waitFor(t, 5*time.Second, "the leadership routine", func() bool { return p.leadership() != nil })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := range 2 {
		if err := p.Close(ctx); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	if p.leadership() != nil {
		t.Fatal("the acceptor's leadership context is still live after Close")
	}
	if !tc.cluster.IsLeader() {
		t.Fatal("closing the controller ended the cluster's leadership, want it kept")
	}
	if err := p.Start(); err == nil {
		t.Fatal("Start after Close succeeded, want an error")
	}
}
