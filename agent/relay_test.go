package agent

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// TestRelayThroughClientNode: a client node relays a consistent read, a
// snapshot save and a snapshot restore (a large PUT body) to the leader
// over the internal gRPC port.
func TestRelayThroughClientNode(t *testing.T) {
	if testing.Short() {
		t.Skip("four agents in one process: skipped with -short")
	}
	c := startPeeringCluster(t, "r", "dc1")
	c.register(t, "web", "web-1", api.HealthPassing)
	svcs, _, err := c.api.Catalog().Service("web", "", nil)
	if err != nil || len(svcs) != 1 {
		t.Fatalf("consistent read through the client: %v, %v", svcs, err)
	}
	rc, _, err := c.api.Snapshot().Save(nil)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || len(snap) == 0 {
		t.Fatalf("snapshot through the client: %d bytes, %v", len(snap), err)
	}
	if err := c.api.Agent().ServiceDeregister("web-1"); err != nil {
		t.Fatal(err)
	}
	if err := c.api.Snapshot().Restore(nil, bytes.NewReader(snap)); err != nil {
		t.Fatalf("restore through the client: %v", err)
	}
	eventually(t, 10*time.Second, "web is back after the restore", func() error {
		svcs, _, err := c.api.Catalog().Service("web", "", &api.QueryOptions{AllowStale: true})
		if err != nil {
			return err
		}
		if len(svcs) != 1 {
			return io.ErrUnexpectedEOF
		}
		return nil
	})
}
