// Package local holds the services and checks registered with this agent, runs
// their checks, and keeps the replicated catalog in agreement with them
// (anti-entropy): every change is written through at once, and a full sync of
// the node runs periodically and whenever the set of servers changes, so
// registrations come back after the servers lose them.
//
// It imports catalog and checks; nothing of ours imports it but the HTTP API
// and the agent wiring.
package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/catalog/configentry"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/checks"
	"github.com/peerd/peerd/internal/decode"
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
	// writeMu orders this agent's catalog writes (see write).
	writeMu sync.Mutex
	// offline suppresses write-through while restoring persisted state.
	offline bool

	kick chan struct{}
}

// New returns the local state; Run starts anti-entropy.
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
		services: map[string]*Service{}, checks: map[string]*Check{},
		kick: make(chan struct{}, 1),
	}
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
	if def.CheckID == "" {
		def.CheckID = def.Name
	}
	if def.CheckID == "" {
		return errors.New("check needs a Name (or ID)")
	}
	if def.Name == "" {
		def.Name = def.CheckID
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

// write commits one catalog write, built (under s.mu) from the local state
// at the moment it is sent. writeMu orders every write this agent makes: a
// full sync built from older state can never land after a newer change, and
// a registration never carries check results older than ones already
// written. A failed write asks for a full sync.
func (s *State) write(ctx context.Context, build func() *catalog.Command) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	cmd := build()
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	if s.offline {
		s.Kick()
		return
	}
	if _, err := s.apply.Apply(ctx, cmd); err != nil {
		s.log.Warn("catalog write failed; anti-entropy will retry", "command", cmd.Type, "err", err)
		s.Kick()
	}
}

// Kick asks for a full sync soon (e.g. because the servers changed).
func (s *State) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// SyncNow writes the node's full local state to the catalog in one write.
func (s *State) SyncNow(ctx context.Context) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	req := &state.SyncNodeRequest{Node: s.node()}
	ids := slices.Sorted(maps.Keys(s.services))
	for _, id := range ids {
		cp := *s.services[id].Service
		req.Services = append(req.Services, &cp)
	}
	cids := slices.Sorted(maps.Keys(s.checks))
	for _, id := range cids {
		cp := *s.checks[id].Check
		req.Checks = append(req.Checks, &cp)
	}
	s.mu.Unlock()
	if _, err := s.apply.Apply(ctx, &catalog.Command{Type: catalog.CmdSyncNode, SyncNode: req}); err != nil {
		return fmt.Errorf("sync node %q: %w", s.cfg.Node.Node, err)
	}
	return nil
}

// Run runs anti-entropy until ctx ends: a full sync at start, every
// SyncInterval, on Kick, and with backoff after a failure. Checks stop when it
// returns.
func (s *State) Run(ctx context.Context) {
	defer s.runner.Close()
	backoff := time.Second
	next := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(next):
		case <-s.kick:
		}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := s.SyncNow(sctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("anti-entropy sync failed; retrying", "err", err, "in", backoff)
			next = backoff
			backoff = min(backoff*2, s.cfg.SyncInterval)
			continue
		}
		backoff, next = time.Second, s.cfg.SyncInterval
	}
}

// ServiceFromDefinition turns an operator's service definition into the
// catalog's service and its check definitions, applying Consul's defaults (ID
// = Name, check IDs "service:<id>[:n]", weights 1/1).
func ServiceFromDefinition(def *state.ServiceDefinition) (*state.Service, []*state.CheckType, error) {
	if def == nil {
		return nil, nil, errors.New("service definition is empty")
	}
	if def.Name == "" {
		return nil, nil, fieldErr("Name", "missing service name (e.g. \"Name\": \"web\")")
	}
	if err := ValidateServiceName(def.Name); err != nil {
		return nil, nil, fieldErr("Name", "%v", err)
	}
	if def.Port < 0 || def.Port > 65535 {
		return nil, nil, fieldErr("Port", "%d is not between 0 and 65535", def.Port)
	}
	if def.Kind == "connect-proxy" {
		// Consul's rules for a proxy registration.
		if def.Proxy == nil || def.Proxy.DestinationServiceName == "" {
			return nil, nil, fieldErr("Proxy.DestinationServiceName", "required for a connect-proxy: name the service it fronts")
		}
		if def.Port == 0 && def.SocketPath == "" {
			return nil, nil, fieldErr("Port", "a connect-proxy needs a Port (or SocketPath)")
		}
	}
	if err := validateUpstreams(def); err != nil {
		return nil, nil, err
	}
	id := def.ID
	if id == "" {
		id = def.Name
	}
	if strings.ContainsAny(id, "/?#") {
		return nil, nil, fieldErr("ID", "%q must not contain '/', '?' or '#'", id)
	}
	w := state.Weights{Passing: 1, Warning: 1}
	if def.Weights != nil {
		w = *def.Weights
		if w.Passing < 1 {
			return nil, nil, fieldErr("Weights.Passing", "%d must be at least 1", w.Passing)
		}
	}
	if len(def.Meta) > 64 {
		return nil, nil, fieldErr("Meta", "%d keys, at most 64 allowed", len(def.Meta))
	}
	for k, v := range def.Meta {
		if k == "" || len(k) > 128 || len(v) > 512 {
			return nil, nil, fieldErr(fmt.Sprintf("Meta[%q]", k), "keys must be 1-128 characters and values at most 512")
		}
	}
	svc := &state.Service{
		Kind: def.Kind, ID: id, Service: def.Name, Tags: def.Tags, Address: def.Address,
		TaggedAddresses: def.TaggedAddresses, Meta: def.Meta, Port: def.Port, SocketPath: def.SocketPath,
		Weights: w, EnableTagOverride: def.EnableTagOverride, Proxy: def.Proxy, Connect: def.Connect,
		Namespace: def.Namespace, Partition: def.Partition,
	}
	if svc.Tags == nil {
		svc.Tags = []string{}
	}
	if svc.Meta == nil {
		svc.Meta = map[string]string{}
	}
	var defs []*state.CheckType
	if def.Check != nil {
		defs = append(defs, def.Check)
	}
	defs = append(defs, def.Checks...)
	out := make([]*state.CheckType, 0, len(defs))
	for i, cd := range defs {
		cp := *cd
		if cp.CheckID == "" {
			cp.CheckID = "service:" + id
			if len(defs) > 1 {
				cp.CheckID = fmt.Sprintf("service:%s:%d", id, i+1)
			}
		}
		if cp.Name == "" {
			cp.Name = fmt.Sprintf("Service '%s' check", def.Name)
		}
		cp.ServiceID = id
		out = append(out, &cp)
	}
	return svc, out, nil
}

// fieldErr is a validation error naming the field at fault.
// validateUpstreams checks the explicit upstreams of a definition, in
// Proxy.Upstreams and in Consul's Connect.SidecarService.Proxy.Upstreams:
// each names a destination and binds a distinct local port (the
// terminator opens a listener per upstream).
func validateUpstreams(def *state.ServiceDefinition) error {
	type list struct {
		path string
		ups  []state.Upstream
	}
	var lists []list
	if def.Proxy != nil {
		lists = append(lists, list{"Proxy.Upstreams", def.Proxy.Upstreams})
	}
	if sc := def.Connect; sc != nil && sc.SidecarService != nil && sc.SidecarService.Proxy != nil {
		lists = append(lists, list{"Connect.SidecarService.Proxy.Upstreams", sc.SidecarService.Proxy.Upstreams})
	}
	binds := map[string]string{}
	for _, l := range lists {
		for i, u := range l.ups {
			path := fmt.Sprintf("%s[%d]", l.path, i)
			switch u.DestinationType {
			case "", "service", "prepared_query":
			default:
				return fieldErr(path+".DestinationType", "%q: want \"service\" (default) or \"prepared_query\"", u.DestinationType)
			}
			if u.DestinationName == "" {
				return fieldErr(path+".DestinationName", "missing: name the service to call")
			}
			if u.DestinationType != "prepared_query" {
				if err := ValidateServiceName(u.DestinationName); err != nil {
					return fieldErr(path+".DestinationName", "%v", err)
				}
			}
			if u.DestinationPeer != "" {
				if !configentry.ValidPeerName(u.DestinationPeer) {
					return fieldErr(path+".DestinationPeer", "%q: %s", u.DestinationPeer, configentry.PeerNameRule)
				}
				if u.Datacenter != "" {
					return fieldErr(path+".Datacenter", "cannot be combined with DestinationPeer: a peer is its own datacenter")
				}
			}
			if u.LocalBindSocketPath != "" {
				continue
			}
			if u.LocalBindPort < 1 || u.LocalBindPort > 65535 {
				return fieldErr(path+".LocalBindPort", "%d: want a port from 1 to 65535 for the local listener (or LocalBindSocketPath)", u.LocalBindPort)
			}
			addr := u.LocalBindAddress
			if addr == "" {
				addr = "127.0.0.1"
			} else if net.ParseIP(addr) == nil {
				return fieldErr(path+".LocalBindAddress", "%q is not an IP address", addr)
			}
			key := net.JoinHostPort(addr, fmt.Sprint(u.LocalBindPort))
			if prev, dup := binds[key]; dup {
				return fieldErr(path+".LocalBindPort", "%s is already bound by %s: give each upstream its own port", key, prev)
			}
			binds[key] = path
		}
	}
	return nil
}

func fieldErr(field, format string, a ...any) error {
	return &decode.Error{Path: field, Msg: fmt.Sprintf(format, a...)}
}

// ValidateServiceName applies Consul's rule for names that must work in DNS:
// letters, digits, dashes and underscores; other characters are refused.
func ValidateServiceName(name string) error {
	if len(name) > configentry.MaxServiceNameLength {
		return fmt.Errorf("service name %q is longer than %d characters", name, configentry.MaxServiceNameLength)
	}
	if !configentry.ValidServiceNameChars(name) {
		return fmt.Errorf("service name %q: only letters, digits, '-', '_' and '.' are allowed", name)
	}
	return nil
}

// persisted is what StateDir keeps.
type persisted struct {
	Services []*state.ServiceDefinition
	Checks   []*state.CheckType
}

func (s *State) statePath() string {
	return filepath.Join(s.cfg.StateDir, "local-state.json")
}

// persist writes the API-registered services and checks to StateDir.
func (s *State) persist() {
	if s.cfg.StateDir == "" {
		return
	}
	s.mu.Lock()
	var p persisted
	for _, id := range slices.Sorted(maps.Keys(s.services)) {
		svc := s.services[id]
		if svc.FromConfig {
			continue
		}
		def := DefinitionFromService(svc.Service)
		for _, cid := range svc.Checks {
			if c, ok := s.checks[cid]; ok {
				cd := c.Definition
				def.Checks = append(def.Checks, &cd)
			}
		}
		p.Services = append(p.Services, def)
	}
	for _, id := range slices.Sorted(maps.Keys(s.checks)) {
		c := s.checks[id]
		if !c.FromConfig && c.Check.ServiceID == "" {
			cd := c.Definition
			p.Checks = append(p.Checks, &cd)
		}
	}
	s.mu.Unlock()
	b, err := json.MarshalIndent(&p, "", "  ")
	if err == nil {
		err = writeFileAtomic(s.statePath(), b)
	}
	if err != nil {
		s.log.Error("persist local services", "err", err)
	}
}

func (s *State) load() error {
	if s.cfg.StateDir == "" {
		return nil
	}
	b, err := os.ReadFile(s.statePath())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read local state: %w", err)
	}
	var p persisted
	if err := json.Unmarshal(b, &p); err != nil {
		return fmt.Errorf("read local state %s: %w (move the file away to start empty)", s.statePath(), err)
	}
	// Nothing is written through while loading: Run's first sync does it.
	s.offline = true
	defer func() { s.offline = false }()
	ctx := context.Background()
	for _, def := range p.Services {
		if err := s.AddService(ctx, def, false); err != nil {
			return fmt.Errorf("restore service %q: %w", def.Name, err)
		}
	}
	for _, cd := range p.Checks {
		if err := s.AddCheck(ctx, cd, false); err != nil {
			return fmt.Errorf("restore check %q: %w", cd.CheckID, err)
		}
	}
	return nil
}

// DefinitionFromService is the inverse of ServiceFromDefinition, without checks.
func DefinitionFromService(svc *state.Service) *state.ServiceDefinition {
	w := svc.Weights
	return &state.ServiceDefinition{
		Kind: svc.Kind, ID: svc.ID, Name: svc.Service, Tags: svc.Tags, Address: svc.Address,
		TaggedAddresses: svc.TaggedAddresses, Meta: svc.Meta, Port: svc.Port, SocketPath: svc.SocketPath,
		EnableTagOverride: svc.EnableTagOverride, Weights: &w, Proxy: svc.Proxy, Connect: svc.Connect,
		Namespace: svc.Namespace, Partition: svc.Partition,
	}
}

func writeFileAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// DecodeServiceDefinition strictly decodes a service registration body
// (Consul's AgentServiceRegistration JSON) and checks it the way AddService
// will, so a bad registration is refused before anything changes.
func DecodeServiceDefinition(data []byte) (*state.ServiceDefinition, error) {
	var def state.ServiceDefinition
	if err := decode.JSON(data, &def); err != nil {
		return nil, err
	}
	_, checkDefs, err := ServiceFromDefinition(&def)
	if err != nil {
		return nil, err
	}
	for _, cd := range checkDefs {
		if err := checks.Validate(cd); err != nil {
			return nil, fmt.Errorf("check %q: %w", cd.CheckID, err)
		}
	}
	return &def, nil
}
