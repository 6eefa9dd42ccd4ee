package local

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/decode"
)

// checkRecorder is an Applier that keeps the last status written for each
// check and the checks deregistered.
type checkRecorder struct {
	mu       sync.Mutex
	status   map[string]string
	deregged map[string]bool
}

func newCheckRecorder() *checkRecorder {
	return &checkRecorder{status: map[string]string{}, deregged: map[string]bool{}}
}

func (r *checkRecorder) Apply(_ context.Context, cmd *catalog.Command) (*catalog.ApplyResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case cmd.Register != nil:
		for _, c := range cmd.Register.Checks {
			r.status[c.CheckID], r.deregged[c.CheckID] = c.Status, false
		}
	case cmd.Deregister != nil && cmd.Deregister.CheckID != "":
		r.deregged[cmd.Deregister.CheckID] = true
		delete(r.status, cmd.Deregister.CheckID)
	}
	return &catalog.ApplyResult{OK: true}, nil
}

func (r *checkRecorder) get(id string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status[id], r.deregged[id]
}

func newMaintState(t *testing.T, dir string, apply Applier) *State {
	t.Helper()
	s, err := New(Config{Node: state.Node{Node: "n1", Address: "127.0.0.1"}, SyncInterval: time.Hour, StateDir: dir}, apply)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// Maintenance adds Consul's critical checks, written through, kept in
// StateDir across a restart and a re-registration, and removed on disable.
func TestMaintenance(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	rec := newCheckRecorder()
	s := newMaintState(t, dir, rec)
	ttl := &state.CheckType{CheckID: "web-ttl", TTL: decode.Duration(time.Minute), Status: state.HealthPassing}
	if err := s.AddService(ctx, &state.ServiceDefinition{Name: "web", Port: 80, Checks: []*state.CheckType{ttl}}, false); err != nil {
		t.Fatal(err)
	}

	if err := s.EnableServiceMaintenance(ctx, "nope", "x"); !errors.Is(err, ErrUnknownService) {
		t.Fatalf("maintenance of an unknown service: got %v, want ErrUnknownService", err)
	}
	if err := s.EnableServiceMaintenance(ctx, "web", "deploying"); err != nil {
		t.Fatal(err)
	}
	// A second enable keeps the first reason, as Consul's.
	if err := s.EnableServiceMaintenance(ctx, "web", "other"); err != nil {
		t.Fatal(err)
	}
	s.EnableNodeMaintenance(ctx, "")
	sid := ServiceMaintenanceCheckID("web")
	if got, _ := rec.get(sid); got != state.HealthCritical {
		t.Fatalf("catalog status of %s: got %q, want critical", sid, got)
	}
	if got, _ := rec.get(NodeMaintenanceCheckID); got != state.HealthCritical {
		t.Fatalf("catalog status of %s: got %q, want critical", NodeMaintenanceCheckID, got)
	}
	c := s.Checks()[sid]
	if c == nil || c.ServiceID != "web" || c.Notes != "deploying" || c.Type != MaintenanceCheckType || c.Name != "Service Maintenance Mode" {
		t.Fatalf("service maintenance check: got %+v", c)
	}
	if on, reason := s.InMaintenance(""); !on || reason != defaultNodeMaintReason {
		t.Fatalf("node maintenance: got %v %q, want on with Consul's default note", on, reason)
	}

	// Registering web again keeps its maintenance.
	if err := s.AddService(ctx, &state.ServiceDefinition{Name: "web", Port: 81, Checks: []*state.CheckType{ttl}}, false); err != nil {
		t.Fatal(err)
	}
	if on, _ := s.InMaintenance("web"); !on {
		t.Fatal("re-registering web ended its maintenance")
	}
	_, hcs, _ := s.Service("web")
	if len(hcs) != 2 {
		t.Fatalf("web's checks after re-registration: got %d, want web-ttl and %s", len(hcs), sid)
	}

	// A restart restores both; the service comes back from StateDir
	// first, a config service (registered after New) gets it on AddService.
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	s2 := newMaintState(t, dir, newCheckRecorder())
	if on, reason := s2.InMaintenance("web"); !on || reason != "deploying" {
		t.Fatalf("after restart: web maintenance %v %q, want on, deploying", on, reason)
	}
	if on, _ := s2.InMaintenance(""); !on {
		t.Fatal("after restart: node maintenance lost")
	}

	if err := s2.DisableServiceMaintenance(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	s2.DisableNodeMaintenance(ctx)
	s2.DisableNodeMaintenance(ctx) // not in maintenance: nothing to do
	if on, _ := s2.InMaintenance("web"); on {
		t.Fatal("web still in maintenance after disable")
	}
	if _, ok := s2.Checks()[NodeMaintenanceCheckID]; ok {
		t.Fatal("node maintenance check still there after disable")
	}
	s3 := newMaintState(t, dir, newCheckRecorder())
	if on, _ := s3.InMaintenance("web"); on {
		t.Fatal("after disable and restart: web in maintenance again")
	}
}

// A maintenance mode restored for a service from the agent's config files
// applies when that service is registered.
func TestMaintenanceRestoredForConfigService(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := newMaintState(t, dir, newCheckRecorder())
	if err := s.AddService(ctx, &state.ServiceDefinition{Name: "db", Port: 5432}, true); err != nil {
		t.Fatal(err)
	}
	if err := s.EnableServiceMaintenance(ctx, "db", "migrating"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	rec := newCheckRecorder()
	s2 := newMaintState(t, dir, rec)
	if on, _ := s2.InMaintenance("db"); on {
		t.Fatal("db in maintenance before it is registered")
	}
	if err := s2.AddService(ctx, &state.ServiceDefinition{Name: "db", Port: 5432}, true); err != nil {
		t.Fatal(err)
	}
	if on, reason := s2.InMaintenance("db"); !on || reason != "migrating" {
		t.Fatalf("db maintenance after registration: got %v %q, want on, migrating", on, reason)
	}
	if got, _ := rec.get(ServiceMaintenanceCheckID("db")); got != state.HealthCritical {
		t.Fatalf("catalog status: got %q, want critical", got)
	}
}
