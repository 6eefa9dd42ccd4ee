package state

import (
	"fmt"

	"github.com/hashicorp/go-memdb"

	"github.com/peerd/peerd/catalog/configentry"
)

// entryOverride stands in for the stored entry of the same kind and name
// while a write is checked: the entry being written, or (entry nil) a
// deletion. The zero value overrides nothing.
type entryOverride struct {
	kind, name string
	entry      configentry.Entry // nil = deleted
}

// lookupEntry returns the entry of kind and name inside tx, as it would be
// with o in place, and adds what it read to ws as Store.ConfigEntry does.
func lookupEntry(tx *memdb.Txn, ws memdb.WatchSet, kind, name string, o entryOverride) (configentry.Entry, error) {
	if o.kind == kind && o.name == name {
		return o.entry, nil
	}
	if ws != nil {
		tablesIndex(tx, ws, tableConfig)
	}
	ch, raw, err := tx.FirstWatch(tableConfig, "id", kind, name)
	if err != nil {
		return nil, fmt.Errorf("look up config entry %s/%s: %w", kind, name, err)
	}
	if ws != nil {
		ws.Add(ch)
	}
	if raw == nil {
		return nil, nil
	}
	return raw.(*configRow).Entry, nil
}

// serviceProtocol is the one rule for a service's protocol: its
// service-defaults, else the global proxy-defaults, else "tcp".
func serviceProtocol(tx *memdb.Txn, ws memdb.WatchSet, service string, o entryOverride) (string, error) {
	for _, k := range [...][2]string{{configentry.ServiceDefaults, service}, {configentry.ProxyDefaults, configentry.ProxyConfigGlobal}} {
		e, err := lookupEntry(tx, ws, k[0], k[1], o)
		if err != nil {
			return "", fmt.Errorf("protocol of %q: %w", service, err)
		}
		if e != nil {
			if p := configentry.Protocol(e); p != "" {
				return p, nil
			}
		}
	}
	return "tcp", nil
}

// checkChainProtocols refuses a write that would leave a service-router or
// service-splitter on a service whose protocol is not HTTP-based, as Consul's
// discovery chain compiler does.
func checkChainProtocols(tx *memdb.Txn, o entryOverride) error {
	for _, kind := range []string{configentry.ServiceRouter, configentry.ServiceSplitter} {
		it, err := tx.Get(tableConfig, "id_prefix", kind)
		if err != nil {
			return fmt.Errorf("list %s entries: %w", kind, err)
		}
		var names []string
		for raw := it.Next(); raw != nil; raw = it.Next() {
			names = append(names, raw.(*configRow).Name)
		}
		if o.kind == kind && o.entry != nil {
			names = append(names, o.name)
		}
		for _, name := range names {
			if e, err := lookupEntry(tx, nil, kind, name, o); err != nil {
				return err
			} else if e == nil {
				continue
			}
			p, err := serviceProtocol(tx, nil, name, o)
			if err != nil {
				return err
			}
			if !configentry.L7Protocol(p) {
				return fmt.Errorf("discovery chain %q uses a protocol (%s) that does not permit advanced routing or splitting behavior: "+
					"set Protocol = \"http\" (or http2, grpc) in the service-defaults entry for %q first", name, p, name)
			}
		}
	}
	return nil
}

// ServiceProtocol returns a service's protocol: its service-defaults, else
// the global proxy-defaults, else "tcp". It adds what it read to ws.
func (s *Store) ServiceProtocol(ws memdb.WatchSet, service string) (string, error) {
	tx := s.read(ws)
	defer tx.Abort()
	return serviceProtocol(tx, ws, service, entryOverride{})
}
