package peering

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/catalog/configentry"
	"github.com/peerd/peerd/catalog/state"
)

func TestReadListDelete(t *testing.T) {
	ctx := testContext(t)
	a, b := establishedPair(t)
	if _, err := b.peering.GenerateToken(ctx, GenerateTokenRequest{PeerName: "c"}); err != nil {
		t.Fatal(err)
	}
	entry, err := configentry.DecodeJSON([]byte(`{"Kind":"exported-services","Name":"default","Services":[{"Name":"web","Consumers":[{"Peer":"a"}]},{"Name":"db","Consumers":[{"Peer":"c"}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(entry)
	if _, err := b.cluster.Apply(ctx, &catalog.Command{Type: catalog.CmdConfigSet, ConfigEntry: &catalog.ConfigEntryRequest{
		Kind: configentry.ExportedServices, Name: "default", Entry: raw}}); err != nil {
		t.Fatal(err)
	}

	info, err := b.peering.Read(ctx, "a")
	if err != nil || info == nil {
		t.Fatalf("read: %v, %v", info, err)
	}
	if info.Name != "a" || info.Partition != "default" || info.ShouldDial || info.PeerID != "" ||
		!slices.Equal(info.StreamStatus.ExportedServices, []string{"web"}) || info.CreateIndex == 0 {
		t.Errorf("read a: got %+v", info)
	}
	if missing, err := b.peering.Read(ctx, "nope"); missing != nil || err != nil {
		t.Errorf("read missing: got %v, %v; want nil, nil", missing, err)
	}
	list, err := b.peering.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range list {
		names = append(names, p.Name+"="+p.State)
	}
	if len(names) != 2 || !strings.HasPrefix(names[0], "a=") || names[1] != "c=PENDING" {
		t.Errorf("list: got %v", names)
	}

	dial, err := a.peering.Read(ctx, "b")
	if err != nil || dial == nil || !dial.ShouldDial || dial.Remote.Datacenter != "dc2" || len(dial.PeerCAPems) == 0 {
		t.Errorf("read dialer: got %+v, %v", dial, err)
	}

	err = b.peering.Delete(ctx, "nope")
	if !errors.Is(err, ErrPeeringNotFound) || err.Error() != `Peering not found for "nope"` {
		t.Errorf("delete missing: got %v", err)
	}
	before := time.Now()
	if err := b.peering.Delete(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	// The deletion routine may already have removed the row.
	if p := storedPeering(t, b, "c"); p != nil {
		if p.State != state.PeeringDeleting || time.Unix(0, p.DeletedAt).Before(before.Add(-time.Second)) {
			t.Errorf("deleted peering: got state %s, deleted at %d", p.State, p.DeletedAt)
		}
		if err := b.peering.Delete(ctx, "c"); err != nil && !errors.Is(err, ErrPeeringNotFound) {
			t.Errorf("deleting again: %v", err)
		}
		if _, err := b.peering.GenerateToken(ctx, GenerateTokenRequest{PeerName: "c"}); !errors.Is(err, ErrPeeringConflict) && err != nil {
			t.Errorf("token for a deleting peering: got %v", err)
		}
	}
}

// TestForwarding drives the API from a client node joined to b: every call
// is forwarded to b's leader over gRPC, and errors keep their sentinels.
func TestForwarding(t *testing.T) {
	ctx := testContext(t)
	a := newTestCluster(t, "a", "dc1", nil)
	b := newTestCluster(t, "b", "dc2", nil)

	cc := catalog.DefaultConfig()
	cc.NodeName, cc.NodeID, cc.Datacenter = "b-client", uuid.NewString(), "dc2"
	cc.Timing = catalog.FastTiming()
	client, err := catalog.New(cc)
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close(context.Background()) })
	if _, err := client.Join(b.cluster.GossipAddr()); err != nil {
		t.Fatal(err)
	}
	pc := DefaultConfig()
	pc.Cluster = client
	p, err := New(pc)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(client.Servers()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the client never saw b's server")
		}
		time.Sleep(20 * time.Millisecond)
	}

	tok, err := p.GenerateToken(ctx, GenerateTokenRequest{PeerName: "a", Meta: map[string]string{"via": "client"}})
	if err != nil {
		t.Fatalf("forwarded generate: %v", err)
	}
	if row := storedPeering(t, b, "a"); row == nil || row.Meta["via"] != "client" {
		t.Errorf("forwarded generate stored %+v", row)
	}
	if err := a.peering.Establish(ctx, EstablishRequest{PeerName: "b", PeeringToken: tok}); err != nil {
		t.Fatal(err)
	}
	info, err := p.Read(ctx, "a")
	if err != nil || info == nil || info.Name != "a" || info.ID != storedPeering(t, b, "a").ID {
		t.Errorf("forwarded read: got %+v, %v", info, err)
	}
	if info, err := p.Read(ctx, "nope"); info != nil || err != nil {
		t.Errorf("forwarded read of a missing peering: got %+v, %v", info, err)
	}
	list, err := p.List(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "a" {
		t.Errorf("forwarded list: got %v, %v", list, err)
	}
	own, err := p.GenerateToken(ctx, GenerateTokenRequest{PeerName: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Establish(ctx, EstablishRequest{PeerName: "y", PeeringToken: own}); !errors.Is(err, ErrSameCluster) {
		t.Errorf("forwarded same-cluster establish: got %v, want ErrSameCluster", err)
	}
	if err := p.Delete(ctx, "nope"); !errors.Is(err, ErrPeeringNotFound) || err.Error() != `Peering not found for "nope"` {
		t.Errorf("forwarded delete of a missing peering: got %v", err)
	}
	if tb, err := p.TrustBundleRead(ctx, "a"); err != nil {
		t.Errorf("forwarded trust bundle read: %v (%v)", err, tb)
	}
	if err := p.Delete(ctx, "x"); err != nil {
		t.Errorf("forwarded delete: %v", err)
	}

	// A call that was already forwarded twice is not forwarded again.
	over := context.WithValue(ctx, forwardCount{}, maxForwards)
	if _, err := p.List(over); !errors.Is(err, catalog.ErrNoLeader) {
		t.Errorf("over-forwarded call: got %v, want ErrNoLeader", err)
	}
}
