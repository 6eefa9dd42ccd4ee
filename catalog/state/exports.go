package state

import (
	"fmt"
	"maps"
	"slices"

	"github.com/hashicorp/go-memdb"

	"github.com/peerd/peerd/catalog/configentry"
)

// Export resolution: which peers receive a service. The rule is written
// once, here, and both the exporter (what is replicated to a peer) and the
// gateway (what a peer may call) follow it: an exported-services entry that
// names a service decides for it alone; only services no entry names fall
// to the "*" entries. Partition and sameness-group consumers are not peers
// and are skipped.

// Exports is the exported-services entry resolved for peers. The zero value
// exports nothing.
type Exports struct {
	// exact holds the peers of each service an entry names; a name whose
	// entries list no peer is present (with none) and still shadows "*".
	exact    map[string][]string
	wildcard []string
}

// ResolveExports resolves an exported-services entry; nil exports nothing.
func ResolveExports(e *configentry.ExportedServicesConfigEntry) Exports {
	var x Exports
	if e == nil {
		return x
	}
	x.exact = map[string][]string{}
	for _, svc := range e.Services {
		var peers []string
		for _, c := range svc.Consumers {
			if c.Peer != "" {
				peers = append(peers, c.Peer)
			}
		}
		if svc.Name == configentry.WildcardSpecifier {
			x.wildcard = append(x.wildcard, peers...)
		} else {
			x.exact[svc.Name] = append(x.exact[svc.Name], peers...)
		}
	}
	return x
}

// Peers returns the peers service is exported to, sorted and without
// duplicates: those of the entries naming it when there are any, else
// those of the "*" entries. Whether a service matched by "*" exists is the
// caller's concern.
func (x Exports) Peers(service string) []string {
	peers := slices.Clone(x.consumers(service))
	slices.Sort(peers)
	return slices.Compact(peers)
}

// ExportedTo reports whether service is exported to peer.
func (x Exports) ExportedTo(service, peer string) bool {
	return slices.Contains(x.consumers(service), peer)
}

// consumers is the rule itself: the peers of the entries naming service
// when there are any (even none), else those of the "*" entries; unsorted,
// possibly repeated, not to be modified.
func (x Exports) consumers(service string) []string {
	if peers, named := x.exact[service]; named {
		return peers
	}
	return x.wildcard
}

// ExportedService is one local service and the peers it is exported to.
type ExportedService struct {
	Service string
	Peers   []string
}

// Exports returns the resolved exported-services entry and the config
// entries' index, adding what it read to ws.
func (s *Store) Exports(ws memdb.WatchSet) (uint64, Exports, error) {
	idx, raw, err := s.ConfigEntry(ws, configentry.ExportedServices, configentry.DefaultPartition)
	if err != nil {
		return 0, Exports{}, fmt.Errorf("read exported-services: %w", err)
	}
	e, _ := raw.(*configentry.ExportedServicesConfigEntry)
	return idx, ResolveExports(e), nil
}

// ExportedServices returns every service exported to at least one peer
// with its peers, sorted by name, and the index of the data read, adding
// what it read to ws. "*" expands to every typical local service plus every
// discovery chain (a service with a router, splitter or resolver), as in
// Consul; a service an entry names follows that entry (Exports.Peers).
func (s *Store) ExportedServices(ws memdb.WatchSet) (uint64, []ExportedService, error) {
	idx, x, err := s.Exports(ws)
	if err != nil || x.exact == nil {
		return idx, nil, err
	}
	names := map[string]bool{}
	for name := range x.exact {
		names[name] = true
	}
	if len(x.wildcard) > 0 {
		sidx, local, err := s.localServiceNames(ws)
		if err != nil {
			return 0, nil, err
		}
		idx = max(idx, sidx)
		for _, name := range local {
			names[name] = true
		}
	}
	list := make([]ExportedService, 0, len(names))
	for _, name := range slices.Sorted(maps.Keys(names)) {
		if peers := x.Peers(name); len(peers) > 0 {
			list = append(list, ExportedService{Service: name, Peers: peers})
		}
	}
	return idx, list, nil
}

// localServiceNames returns the names of typical local services (no proxies
// or gateways) and of discovery chains, sorted.
func (s *Store) localServiceNames(ws memdb.WatchSet) (uint64, []string, error) {
	idx, typical, err := s.TypicalServiceNames(ws, "")
	if err != nil {
		return 0, nil, fmt.Errorf("list services: %w", err)
	}
	names := map[string]bool{}
	for _, name := range typical {
		names[name] = true
	}
	for _, kind := range []string{configentry.ServiceRouter, configentry.ServiceSplitter, configentry.ServiceResolver} {
		cidx, entries, err := s.ConfigEntries(ws, kind)
		if err != nil {
			return 0, nil, fmt.Errorf("list %s entries: %w", kind, err)
		}
		idx = max(idx, cidx)
		for _, e := range entries {
			names[e.GetName()] = true
		}
	}
	return idx, slices.Sorted(maps.Keys(names)), nil
}

// ServicesExportedTo returns the sorted names of the services of list
// exported to peer.
func ServicesExportedTo(list []ExportedService, peer string) []string {
	var out []string
	for _, e := range list {
		if slices.Contains(e.Peers, peer) {
			out = append(out, e.Service)
		}
	}
	return out
}

// Served reports whether this cluster's gateways terminate connections for
// service: it has instances here, or a resolver that sends them elsewhere.
func (s *Store) Served(service string) (bool, error) {
	_, nodes, err := s.ServiceNodes(nil, "", service)
	if err != nil {
		return false, fmt.Errorf("instances of %q: %w", service, err)
	}
	if len(nodes) > 0 {
		return true, nil
	}
	_, e, err := s.ConfigEntry(nil, configentry.ServiceResolver, service)
	return err == nil && e != nil, nil
}
