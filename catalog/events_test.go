package catalog

import (
	"context"
	"testing"
	"time"
)

// nextEvent waits for MemberEvents wake-ups until cond holds.
func nextEvent(t *testing.T, events <-chan struct{}, what string, cond func() bool) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for !cond() {
		select {
		case _, ok := <-events:
			if !ok {
				t.Fatalf("%s: the events channel closed", what)
			}
		case <-timeout:
			t.Fatalf("%s: no event within 10s", what)
		}
	}
}

func TestMemberEvents(t *testing.T) {
	s1 := startNode(t, "s1", 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := s1.MemberEvents(ctx)
	// A one-node pool is quiet once this node has joined it: the wake-up
	// that announces the leader comes from raft, not from gossip.
	if s1.Leader() != "" {
		t.Fatal("a leader was elected before the test subscribed (bootstrap takes a tick and an election timeout)")
	}
	nextEvent(t, events, "s1 elects itself", func() bool { return s1.Leader() != "" })

	// Members that join and fail are events, not polls.
	c1 := startNode(t, "c1", -1, s1.GossipAddr())
	nextEvent(t, events, "c1 joins", func() bool { return len(s1.Members()) == 2 })
	c2 := startNode(t, "c2", -1, s1.GossipAddr())
	nextEvent(t, events, "c2 joins", func() bool { return len(s1.Members()) == 3 })
	clientEvents := c2.MemberEvents(ctx)
	c1.stop()
	for _, n := range []struct {
		node   *testNode
		events <-chan struct{}
	}{{s1, events}, {c2, clientEvents}} {
		nextEvent(t, n.events, n.node.LocalMember().Name+" sees c1 fail", func() bool {
			for _, m := range n.node.Members() {
				if m.Name == "c1" {
					return m.Status == StatusFailed
				}
			}
			return false
		})
	}

	// The channel closes with its context.
	cancel()
	done := make(chan struct{})
	go func() {
		for range events {
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("events channel not closed after its context ended")
	}
}
