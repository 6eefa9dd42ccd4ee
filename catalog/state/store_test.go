package state

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/peerd/peerd/catalog/configentry"
)

func newTestStore(t *testing.T) *Store {
	t.Helper()
	s, err := NewStore()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func reg(node, svc string, checks ...*HealthCheck) *RegisterRequest {
	r := &RegisterRequest{Node: &Node{Node: node, Address: "10.0.0.1"}, Checks: checks}
	if svc != "" {
		r.Service = &Service{ID: svc, Service: svc, Port: 80}
	}
	return r
}

func TestStoreRegisterAndHealth(t *testing.T) {
	s := newTestStore(t)
	if err := s.Register(1, reg("n1", "web", &HealthCheck{CheckID: "c1", ServiceID: "web", Status: HealthPassing})); err != nil {
		t.Fatal(err)
	}
	if err := s.Register(2, reg("n2", "web", &HealthCheck{CheckID: "c1", ServiceID: "web", Status: HealthCritical})); err != nil {
		t.Fatal(err)
	}
	idx, csns, err := s.CheckServiceNodes(nil, "", "web")
	if err != nil {
		t.Fatal(err)
	}
	if idx != 2 || len(csns) != 2 {
		t.Fatalf("got index %d and %d instances, want 2 and 2", idx, len(csns))
	}
	tests := []struct {
		node string
		want string
	}{{"n1", HealthPassing}, {"n2", HealthCritical}}
	for i, tt := range tests {
		if got := AggregatedStatus(csns[i].Checks); csns[i].Node.Node != tt.node || got != tt.want {
			t.Errorf("instance %d: got %s/%s, want %s/%s", i, csns[i].Node.Node, got, tt.node, tt.want)
		}
		if csns[i].Checks[0].ServiceName != "web" {
			t.Errorf("check of %s: got ServiceName %q, want web", tt.node, csns[i].Checks[0].ServiceName)
		}
	}
}

func TestStoreUnchangedWriteWakesNobody(t *testing.T) {
	s := newTestStore(t)
	r := reg("n1", "web")
	if err := s.Register(1, r); err != nil {
		t.Fatal(err)
	}
	ws := memdb.NewWatchSet()
	if _, _, err := s.ServiceNodes(ws, "", "web"); err != nil {
		t.Fatal(err)
	}
	if err := s.Register(2, reg("n1", "web")); err != nil {
		t.Fatal(err)
	}
	if !ws.Watch(time.After(50 * time.Millisecond)) {
		t.Fatal("an identical re-registration woke a watcher")
	}
	r2 := reg("n1", "web")
	r2.Service.Port = 81
	if err := s.Register(3, r2); err != nil {
		t.Fatal(err)
	}
	if ws.Watch(time.After(time.Second)) {
		t.Fatal("a changed registration did not wake the watcher")
	}
	_, sns, _ := s.ServiceNodes(nil, "", "web")
	if got := sns[0].Service; got.CreateIndex != 1 || got.ModifyIndex != 3 {
		t.Fatalf("got create/modify %d/%d, want 1/3", got.CreateIndex, got.ModifyIndex)
	}
}

func TestStoreCheckForUnknownServiceIsRefusedWhole(t *testing.T) {
	s := newTestStore(t)
	err := s.Register(1, reg("n1", "", &HealthCheck{CheckID: "c", ServiceID: "nope"}))
	if !errors.Is(err, ErrMissingService) {
		t.Fatalf("got %v, want ErrMissingService", err)
	}
	// Nothing half-applied: the node of the refused request is not there.
	if _, n, _ := s.Node(nil, "", "n1"); n != nil {
		t.Fatalf("got node %+v after a refused registration, want none", n)
	}
}

func TestStoreSyncNodeRemovesWhatTheAgentNoLongerHas(t *testing.T) {
	s := newTestStore(t)
	if err := s.Register(1, reg("n1", "a", &HealthCheck{CheckID: SerfCheckID, Status: HealthPassing})); err != nil {
		t.Fatal(err)
	}
	if err := s.Register(2, reg("n1", "b", &HealthCheck{CheckID: "b-check", ServiceID: "b"})); err != nil {
		t.Fatal(err)
	}
	err := s.SyncNode(3, &SyncNodeRequest{Node: &Node{Node: "n1", Address: "10.0.0.1"},
		Services: []*Service{{ID: "a", Service: "a", Port: 80}}})
	if err != nil {
		t.Fatal(err)
	}
	_, svcs, _ := s.NodeServices(nil, "", "n1")
	_, checks, _ := s.NodeChecks(nil, "", "n1")
	if len(svcs) != 1 || svcs[0].ID != "a" {
		t.Fatalf("got services %+v, want only a", svcs)
	}
	if len(checks) != 1 || checks[0].CheckID != SerfCheckID {
		t.Fatalf("got checks %+v, want only serfHealth (owned by the leader)", checks)
	}
}

func TestStoreDeregisterNodeRemovesEverything(t *testing.T) {
	s := newTestStore(t)
	if err := s.Register(1, reg("n1", "web", &HealthCheck{CheckID: "c", ServiceID: "web"})); err != nil {
		t.Fatal(err)
	}
	if err := s.Deregister(2, &DeregisterRequest{Node: "n1"}); err != nil {
		t.Fatal(err)
	}
	_, svcs, _ := s.Services(nil, "")
	_, checks, _ := s.NodeChecks(nil, "", "n1")
	if len(svcs) != 0 || len(checks) != 0 {
		t.Fatalf("got %d services and %d checks, want none", len(svcs), len(checks))
	}
}

func TestStorePeerNamespacesAreSeparate(t *testing.T) {
	s := newTestStore(t)
	local := reg("n1", "web")
	imported := reg("n1", "web")
	imported.PeerName = "east"
	if err := s.RegisterBatch(1, []*RegisterRequest{local, imported}); err != nil {
		t.Fatal(err)
	}
	for _, peer := range []string{"", "east"} {
		_, sns, _ := s.ServiceNodes(nil, peer, "web")
		if len(sns) != 1 || sns[0].Service.PeerName != peer {
			t.Errorf("peer %q: got %+v, want one instance of that peer", peer, sns)
		}
	}
}

func serviceDefaults(t *testing.T, name, protocol string) configentry.Entry {
	t.Helper()
	e, err := configentry.DecodeJSON([]byte(`{"Kind":"service-defaults","Name":"` + name + `","Protocol":"` + protocol + `"}`))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestStoreConfigCAS(t *testing.T) {
	s := newTestStore(t)
	tests := []struct {
		name     string
		casIndex uint64
		idx      uint64
		want     bool
	}{
		{"create with cas 0", 0, 5, true},
		{"create again with cas 0 fails", 0, 6, false},
		{"wrong index fails", 4, 7, false},
		{"right index succeeds", 5, 8, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ConfigSet(tt.idx, serviceDefaults(t, "web", "http"), true, tt.casIndex)
			if err != nil || got != tt.want {
				t.Fatalf("got %v (%v), want %v", got, err, tt.want)
			}
		})
	}
	_, e, _ := s.ConfigEntry(nil, configentry.ServiceDefaults, "web")
	if ri := e.GetRaftIndex(); ri.CreateIndex != 5 || ri.ModifyIndex != 8 {
		t.Fatalf("got create/modify %d/%d, want 5/8", ri.CreateIndex, ri.ModifyIndex)
	}
	if ok, _ := s.ConfigDelete(9, configentry.ServiceDefaults, "web", true, 7); ok {
		t.Fatal("delete with a stale cas index succeeded")
	}
	if ok, _ := s.ConfigDelete(9, configentry.ServiceDefaults, "web", true, 8); !ok {
		t.Fatal("delete with the right cas index failed")
	}
}

func TestStoreRouterNeedsHTTPProtocol(t *testing.T) {
	s := newTestStore(t)
	router, err := configentry.DecodeJSON([]byte(`{"Kind":"service-router","Name":"web","Routes":[{"Match":{"HTTP":{"PathPrefix":"/admin"}},"Destination":{"Service":"admin"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ConfigSet(1, router, false, 0); err == nil {
		t.Fatal("router on a tcp service was accepted")
	}
	if _, err := s.ConfigSet(2, serviceDefaults(t, "web", "http"), false, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ConfigSet(3, router, false, 0); err != nil {
		t.Fatalf("router on an http service: %v", err)
	}
	if _, err := s.ConfigSet(4, serviceDefaults(t, "web", "tcp"), false, 0); err == nil {
		t.Fatal("switching a routed service to tcp was accepted")
	}
	if _, err := s.ConfigDelete(5, configentry.ServiceDefaults, "web", false, 0); err == nil {
		t.Fatal("deleting the protocol of a routed service was accepted")
	}
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	src := newTestStore(t)
	if err := src.Register(1, reg("n1", "web", &HealthCheck{CheckID: "c", ServiceID: "web", Status: HealthPassing})); err != nil {
		t.Fatal(err)
	}
	if _, err := src.ConfigSet(2, serviceDefaults(t, "web", "http"), false, 0); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := src.Snapshot().Write(&buf); err != nil {
		t.Fatal(err)
	}
	dst := newTestStore(t)
	// Old state in dst must be dropped by Restore.
	if err := dst.Register(1, reg("stale", "old")); err != nil {
		t.Fatal(err)
	}
	ws := memdb.NewWatchSet()
	_, _, _ = dst.Services(ws, "")
	if err := dst.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if ws.Watch(time.After(time.Second)) {
		t.Fatal("restore did not wake blocked readers")
	}
	_, svcs, _ := dst.Services(nil, "")
	if _, ok := svcs["old"]; ok || len(svcs) != 1 {
		t.Fatalf("got services %v, want only web", svcs)
	}
	_, e, _ := dst.ConfigEntry(nil, configentry.ServiceDefaults, "web")
	if e == nil || configentry.Protocol(e) != "http" {
		t.Fatalf("got config entry %+v, want service-defaults web http", e)
	}
	if got, want := dst.LastIndex(), src.LastIndex(); got != want {
		t.Fatalf("got last index %d, want %d", got, want)
	}
}

func TestServiceIndexWakesOnlyForThatService(t *testing.T) {
	s := newTestStore(t)
	if err := s.Register(1, reg("n1", "web")); err != nil {
		t.Fatal(err)
	}
	if err := s.Register(2, reg("n2", "api")); err != nil {
		t.Fatal(err)
	}
	watch := func() (memdb.WatchSet, uint64) {
		ws := memdb.NewWatchSet()
		idx, _, err := s.CheckServiceNodes(ws, "", "web")
		if err != nil {
			t.Fatal(err)
		}
		return ws, idx
	}
	ws, idx := watch()
	if idx != 1 {
		t.Fatalf("got web's index %d, want 1 (the write to api must not count)", idx)
	}
	api := reg("n2", "api")
	api.Service.Port = 9999
	if err := s.Register(3, api); err != nil {
		t.Fatal(err)
	}
	if !ws.Watch(time.After(50 * time.Millisecond)) {
		t.Fatal("a write to api woke a query on web")
	}
	tests := []struct {
		name  string
		write func(idx uint64) error
	}{
		{"a node-level check on web's node", func(idx uint64) error {
			return s.Register(idx, reg("n1", "", &HealthCheck{CheckID: SerfCheckID, Status: HealthCritical}))
		}},
		{"web's node changes address", func(idx uint64) error {
			r := reg("n1", "")
			r.Node.Address = "10.0.0.9"
			return s.Register(idx, r)
		}},
		{"a new web instance", func(idx uint64) error { return s.Register(idx, reg("n3", "web")) }},
		{"web's node goes away", func(idx uint64) error { return s.Deregister(idx, &DeregisterRequest{Node: "n1"}) }},
	}
	next := uint64(10)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws, before := watch()
			if err := tt.write(next); err != nil {
				t.Fatal(err)
			}
			if ws.Watch(time.After(time.Second)) {
				t.Fatal("query on web not woken")
			}
			if _, after := watch(); after != next || after <= before {
				t.Fatalf("got index %d after the write, want %d", after, next)
			}
			next++
		})
	}
}
