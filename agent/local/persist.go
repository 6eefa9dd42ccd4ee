package local

// Persistence: the services and checks registered through the API are kept
// in StateDir, so an agent restart brings them back.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/peerd/peerd/catalog/state"
)

// persisted is what StateDir keeps.
type persisted struct {
	Services []*state.ServiceDefinition
	Checks   []*state.CheckType
	// Maintenance are the maintenance modes (maintenance.go).
	Maintenance []maintenanceRecord `json:",omitempty"`
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
			if c, ok := s.checks[cid]; ok && !c.Maintenance {
				cd := c.Definition
				def.Checks = append(def.Checks, &cd)
			}
		}
		p.Services = append(p.Services, def)
	}
	for _, id := range slices.Sorted(maps.Keys(s.checks)) {
		c := s.checks[id]
		if !c.FromConfig && !c.Maintenance && c.Check.ServiceID == "" {
			cd := c.Definition
			p.Checks = append(p.Checks, &cd)
		}
	}
	p.Maintenance = s.maintenanceRecordsLocked()
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
	s.restoreMaintenance(p.Maintenance)
	return nil
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
