package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/peerd/peerd/agent/checks"
	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/catalog/state"
)

// Applier commits replicated writes; *catalog.Cluster is one.
type Applier interface {
	Apply(ctx context.Context, cmd *catalog.Command) (*catalog.ApplyResult, error)
}

// Errors returned to API callers.
var (
	ErrUnknownService = errors.New("unknown service")
	ErrUnknownCheck   = errors.New("unknown check")
)

// Config configures the local state.
type Config struct {
	// Node is this node as it appears in the catalog (name, ID, address,
	// datacenter, meta). Required.
	Node state.Node
	// SyncInterval is how often a full anti-entropy sync runs. Zero value:
	// one minute.
	SyncInterval time.Duration
	// StateDir, when set, is where registrations made through the API are
	// persisted so they survive an agent restart (Consul's behaviour). Empty
	// means in memory only (dev mode).
	StateDir string
	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
}

// Service is a service registered with this agent and where it came from.
type Service struct {
	Service *state.Service
	// Checks are the IDs of the checks registered with the service.
	Checks []string
	// FromConfig is true for services defined in the agent's config files;
	// they are not persisted to StateDir.
	FromConfig bool
}

// Check is a check registered with this agent, its definition and last result.
type Check struct {
	Check      *state.HealthCheck
	Definition state.CheckType
	FromConfig bool
	// Maintenance marks a maintenance check (maintenance.go): it has no
	// runner and is persisted as a maintenance mode, not a check.
	Maintenance bool
}

// State is the agent's local services and checks.
type State struct {
	cfg    Config
	log    *slog.Logger
	apply  Applier
	runner *checks.Runner

	mu       sync.Mutex
	services map[string]*Service
	checks   map[string]*Check
	// pendingMaint holds the restored maintenance modes (service ID ->
	// reason) of services not registered yet.
	pendingMaint map[string]string
	// writeMu orders this agent's catalog writes (see write).
	writeMu sync.Mutex
	// offline suppresses write-through while restoring persisted state.
	offline bool

	kick chan struct{}

	// ctx ends at Close and stops anti-entropy (done closes when it has).
	ctx     context.Context
	cancel  context.CancelFunc
	started bool
	done    chan struct{}
}

// New returns the local state, restoring what StateDir holds and starting
// the restored checks; Start starts anti-entropy, Close stops both.
func New(cfg Config, apply Applier) (*State, error) {
	if cfg.Node.Node == "" {
		return nil, errors.New("local state: node name is required")
	}
	if cfg.SyncInterval == 0 {
		cfg.SyncInterval = time.Minute
	}
	l := cfg.Logger
	if l == nil {
		l = slog.Default()
	}
	s := &State{
		cfg: cfg, log: l, apply: apply,
		services: map[string]*Service{}, checks: map[string]*Check{}, pendingMaint: map[string]string{},
		kick: make(chan struct{}, 1), done: make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.runner = checks.New(s.checkResult, l)
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

// Node returns this node as registered in the catalog.
func (s *State) Node() state.Node { return s.cfg.Node }

// AddService registers (or replaces) a service and its checks locally and
// writes it through to the catalog. The write-through failing (no leader) is
// not an error: anti-entropy retries it, as Consul's agent does. The returned
// error is for a bad definition only.
func (s *State) AddService(ctx context.Context, def *state.ServiceDefinition, fromConfig bool) error {
	svc, checkDefs, err := ServiceFromDefinition(def)
	if err != nil {
		return err
	}
	for _, cd := range checkDefs {
		if err := checks.Validate(cd); err != nil {
			return fmt.Errorf("check %q of service %q: %w", cd.CheckID, svc.ID, err)
		}
	}
	s.mu.Lock()
	old := s.services[svc.ID]
	entry := &Service{Service: svc, FromConfig: fromConfig}
	var newChecks []*Check
	for _, cd := range checkDefs {
		hc := s.healthCheck(cd, svc)
		if prev, ok := s.checks[cd.CheckID]; ok && prev.Check.Status != "" && cd.Status == "" {
			hc.Status, hc.Output = prev.Check.Status, prev.Check.Output
		}
		newChecks = append(newChecks, &Check{Check: hc, Definition: *cd, FromConfig: fromConfig})
		entry.Checks = append(entry.Checks, cd.CheckID)
	}
	var drop []string
	if old != nil {
		for _, id := range old.Checks {
			if c, ok := s.checks[id]; ok && c.Maintenance {
				continue // re-added below: maintenance outlives a re-registration
			}
			if !slices.Contains(entry.Checks, id) {
				drop = append(drop, id)
				delete(s.checks, id)
			}
		}
	}
	s.services[svc.ID] = entry
	for _, c := range newChecks {
		s.checks[c.Check.CheckID] = c
	}
	cid := ServiceMaintenanceCheckID(svc.ID)
	if c, ok := s.checks[cid]; ok && c.Maintenance {
		s.addMaintenanceLocked(cid, c.Check.Notes, entry)
	} else if reason, ok := s.pendingMaint[svc.ID]; ok {
		delete(s.pendingMaint, svc.ID)
		s.addMaintenanceLocked(cid, reason, entry)
	}
	s.mu.Unlock()
	for _, id := range drop {
		s.runner.Remove(id)
	}
	s.persist()
	// Dropped checks disappear with a full sync; a changed service with the
	// same checks is one register. Either way the catalog knows the service
	// before its checks report, so no result is refused for an unknown
	// service.
	if len(drop) > 0 {
		if err := s.SyncNow(ctx); err != nil {
			s.log.Warn("catalog write failed; anti-entropy will retry", "err", err)
		}
	} else {
		s.write(ctx, s.registerService(svc.ID))
	}
	for _, c := range newChecks {
		if err := s.runner.Add(c.Check.CheckID, c.Definition); err != nil {
			return err
		}
	}
	return nil
}

// registerService builds the registration of one local service with its
// checks as they are now.
func (s *State) registerService(id string) func() *catalog.Command {
	return func() *catalog.Command {
		svc, ok := s.services[id]
		if !ok {
			return nil
		}
		cp := *svc.Service
		req := &state.RegisterRequest{Node: s.node(), Service: &cp}
		for _, cid := range svc.Checks {
			if c, ok := s.checks[cid]; ok {
				hc := *c.Check
				req.Checks = append(req.Checks, &hc)
			}
		}
		return &catalog.Command{Type: catalog.CmdRegister, Register: req}
	}
}

// registerCheck builds the registration of one local check as it is now.
func (s *State) registerCheck(id string) func() *catalog.Command {
	return func() *catalog.Command {
		c, ok := s.checks[id]
		if !ok {
			return nil
		}
		hc := *c.Check
		return &catalog.Command{Type: catalog.CmdRegister, Register: &state.RegisterRequest{
			Node: s.node(), Checks: []*state.HealthCheck{&hc},
		}}
	}
}

func fixed(cmd *catalog.Command) func() *catalog.Command {
	return func() *catalog.Command { return cmd }
}

// RemoveService deregisters a service and its checks.
func (s *State) RemoveService(ctx context.Context, id string) error {
	s.mu.Lock()
	svc, ok := s.services[id]
	if ok {
		delete(s.services, id)
		for _, cid := range svc.Checks {
			delete(s.checks, cid)
		}
	}
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("service %q: %w", id, ErrUnknownService)
	}
	for _, cid := range svc.Checks {
		s.runner.Remove(cid)
	}
	s.persist()
	s.write(ctx, fixed(&catalog.Command{Type: catalog.CmdDeregister, Deregister: &state.DeregisterRequest{
		Node: s.cfg.Node.Node, ServiceID: id,
	}}))
	return nil
}

// AddCheck registers a standalone check (node-level, or bound to a service
// through ServiceID).
func (s *State) AddCheck(ctx context.Context, def *state.CheckType, fromConfig bool) error {
	if err := CheckDefaults(def); err != nil {
		return err
	}
	if err := checks.Validate(def); err != nil {
		return fmt.Errorf("check %q: %w", def.CheckID, err)
	}
	s.mu.Lock()
	var svc *state.Service
	if def.ServiceID != "" {
		ls, ok := s.services[def.ServiceID]
		if !ok {
			s.mu.Unlock()
			return fmt.Errorf("check %q: ServiceID %q: %w: register the service first", def.CheckID, def.ServiceID, ErrUnknownService)
		}
		svc = ls.Service
		if !slices.Contains(ls.Checks, def.CheckID) {
			ls.Checks = append(ls.Checks, def.CheckID)
		}
	}
	hc := s.healthCheck(def, svc)
	s.checks[def.CheckID] = &Check{Check: hc, Definition: *def, FromConfig: fromConfig}
	s.mu.Unlock()
	s.persist()
	s.write(ctx, s.registerCheck(def.CheckID))
	return s.runner.Add(def.CheckID, *def)
}

// RemoveCheck deregisters a check.
func (s *State) RemoveCheck(ctx context.Context, id string) error {
	s.mu.Lock()
	c, ok := s.checks[id]
	if ok {
		delete(s.checks, id)
		if svc, ok := s.services[c.Check.ServiceID]; ok {
			svc.Checks = slices.DeleteFunc(svc.Checks, func(x string) bool { return x == id })
		}
	}
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("check %q: %w", id, ErrUnknownCheck)
	}
	s.runner.Remove(id)
	s.persist()
	s.write(ctx, fixed(&catalog.Command{Type: catalog.CmdDeregister, Deregister: &state.DeregisterRequest{
		Node: s.cfg.Node.Node, CheckID: id,
	}}))
	return nil
}

// UpdateTTL sets a TTL check's status (pass/warn/fail/update endpoints).
func (s *State) UpdateTTL(id, status, output string) error {
	if !state.ValidHealthStatus(status) {
		return fmt.Errorf("status %q: must be passing, warning or critical", status)
	}
	if err := s.runner.UpdateTTL(id, status, output); err != nil {
		if errors.Is(err, checks.ErrUnknownCheck) {
			return fmt.Errorf("check %q: %w", id, ErrUnknownCheck)
		}
		return err
	}
	return nil
}

// Services returns copies of the local services.
func (s *State) Services() map[string]*state.Service {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]*state.Service, len(s.services))
	for id, svc := range s.services {
		cp := *svc.Service
		out[id] = &cp
	}
	return out
}

// Service returns one local service with its checks.
func (s *State) Service(id string) (*state.Service, []*state.HealthCheck, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	svc, ok := s.services[id]
	if !ok {
		return nil, nil, false
	}
	cp := *svc.Service
	var hcs []*state.HealthCheck
	for _, cid := range svc.Checks {
		if c, ok := s.checks[cid]; ok {
			hc := *c.Check
			hcs = append(hcs, &hc)
		}
	}
	return &cp, hcs, true
}

// Checks returns copies of the local checks with their latest results.
func (s *State) Checks() map[string]*state.HealthCheck {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]*state.HealthCheck, len(s.checks))
	for id, c := range s.checks {
		cp := *c.Check
		out[id] = &cp
	}
	return out
}

// checkResult is the runner's callback: record the result, write it through
// if it changed.
func (s *State) checkResult(id, status, output string) {
	s.mu.Lock()
	c, ok := s.checks[id]
	if !ok || (c.Check.Status == status && c.Check.Output == output) {
		s.mu.Unlock()
		return
	}
	cp := *c.Check
	cp.Status, cp.Output = status, output
	c.Check = &cp
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.write(ctx, s.registerCheck(id))
}

func (s *State) healthCheck(def *state.CheckType, svc *state.Service) *state.HealthCheck {
	status := def.Status
	if status == "" {
		status = state.HealthCritical
	}
	hc := &state.HealthCheck{
		Node: s.cfg.Node.Node, CheckID: def.CheckID, Name: def.Name, Status: status, Notes: def.Notes,
		Type: checks.Kind(def),
		Definition: state.HealthCheckDefinition{
			HTTP: def.HTTP, TLSServerName: def.TLSServerName, TLSSkipVerify: def.TLSSkipVerify,
			Header: def.Header, Method: def.Method, Body: def.Body, TCP: def.TCP,
			Interval: def.Interval, Timeout: def.Timeout, TTL: def.TTL,
			DeregisterCriticalServiceAfter: def.DeregisterCriticalServiceAfter,
		},
	}
	if svc != nil {
		hc.ServiceID, hc.ServiceName, hc.ServiceTags = svc.ID, svc.Service, svc.Tags
	}
	return hc
}

func (s *State) node() *state.Node {
	n := s.cfg.Node
	n.Meta = maps.Clone(n.Meta)
	return &n
}
