package catalog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/peerd/peerd/catalog/state"
)

func startServer(t *testing.T, name, dataDir string) *Cluster {
	t.Helper()
	cfg := DevConfig()
	cfg.NodeName, cfg.NodeID = name, uuid.NewString()
	if dataDir != "" {
		cfg.InMemory, cfg.DataDir = false, dataDir
	}
	c, err := newStarted(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for !c.IsLeader() {
		if ctx.Err() != nil {
			t.Fatal("single server never became leader")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return c
}

func registerService(t *testing.T, c *Cluster, svc string) {
	t.Helper()
	_, err := c.Apply(context.Background(), &Command{Type: CmdRegister, Register: reg("ext", svc)})
	if err != nil {
		t.Fatal(err)
	}
}

func serviceNames(t *testing.T, c *Cluster) map[string][]string {
	t.Helper()
	_, svcs, err := c.Store().Services(nil, "")
	if err != nil {
		t.Fatal(err)
	}
	return svcs
}

func TestSnapshotSaveAndRestore(t *testing.T) {
	c := startServer(t, "s1", "")
	registerService(t, c, "before")
	var snap bytes.Buffer
	h, err := c.SaveSnapshot(&snap)
	if err != nil {
		t.Fatal(err)
	}
	if h.Index == 0 || h.Format != snapshotFormat {
		t.Fatalf("got header %+v, want an index and format %s", h, snapshotFormat)
	}
	registerService(t, c, "after")
	if _, err := c.RestoreSnapshot(bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	svcs := serviceNames(t, c)
	if _, ok := svcs["before"]; !ok {
		t.Fatalf("got %v after restore, want before", svcs)
	}
	if _, ok := svcs["after"]; ok {
		t.Fatalf("got %v after restore, want the later write gone", svcs)
	}
	// Writes still work after a restore.
	registerService(t, c, "later")

	if _, err := c.RestoreSnapshot(bytes.NewReader([]byte("not a snapshot"))); err == nil {
		t.Fatal("restoring garbage succeeded")
	}
}

func TestServerKeepsStateAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	c := startServer(t, "s1", dir)
	for i := range 20 {
		registerService(t, c, fmt.Sprintf("svc-%d", i))
	}
	if err := c.raft.Snapshot().Error(); err != nil {
		t.Fatalf("take raft snapshot: %v", err)
	}
	registerService(t, c, "after-snapshot") // replayed from the log
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	c2 := startServer(t, "s1", dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c2.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	// Caught up means everything is there, without waiting any longer.
	if svcs := serviceNames(t, c2); len(svcs) != 21 {
		t.Fatalf("got %d services once caught up after restart, want 21", len(svcs))
	}
}

func TestLeaderRoutinesRunWhileLeading(t *testing.T) {
	c := startServer(t, "s1", "")
	started := make(chan struct{}, 1)
	stopped := make(chan struct{})
	c.AddLeaderRoutine("test", func(ctx context.Context) {
		started <- struct{}{}
		<-ctx.Done()
		close(stopped)
	})
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("a routine added while leading did not start")
	}
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("the routine was not stopped with the leadership")
	}
}

// External nodes (registered through /v1/catalog/register, not gossip
// members) survive the leader's periodic reap; members that vanished do not.
func TestReapKeepsExternalNodes(t *testing.T) {
	c := startServer(t, "s1", "")
	registerService(t, c, "external") // node "ext", no serfHealth
	ghost := reg("ghost", "")
	ghost.Checks = []*state.HealthCheck{{CheckID: state.SerfCheckID, Status: state.HealthPassing}}
	if _, err := c.Apply(context.Background(), &Command{Type: CmdRegister, Register: ghost}); err != nil {
		t.Fatal(err)
	}
	if err := c.reconcile(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	_, nodes, _ := c.Store().Nodes(nil, "")
	var names []string
	for _, n := range nodes {
		names = append(names, n.Node)
	}
	if fmt.Sprint(names) != "[ext s1]" {
		t.Fatalf("got nodes %v after a reap, want [ext s1] (the vanished member ghost reaped)", names)
	}
}

// newStarted is New followed by Start.
func newStarted(cfg Config) (*Cluster, error) {
	c, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if err := c.Start(); err != nil {
		return nil, err
	}
	return c, nil
}

func TestLifecycle(t *testing.T) {
	cfg := DevConfig()
	cfg.NodeName, cfg.NodeID = "s1", uuid.NewString()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c.Store() == nil {
		t.Fatal("a server's store is nil before Start, want allocated by New")
	}
	if err := c.Leave(context.Background()); !errors.Is(err, ErrShutdown) {
		t.Fatalf("Leave before Start: got %v, want ErrShutdown", err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if err := c.Leave(context.Background()); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	for i := range 2 {
		if err := c.Close(context.Background()); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	if err := c.Start(); !errors.Is(err, ErrShutdown) {
		t.Fatalf("Start after Close: got %v, want ErrShutdown", err)
	}
	if err := c.Leave(context.Background()); !errors.Is(err, ErrShutdown) {
		t.Fatalf("Leave after Close: got %v, want ErrShutdown", err)
	}

	// Closing a member that never started is fine, too.
	c2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Close(context.Background()); err != nil {
		t.Fatalf("Close before Start: %v", err)
	}
}
