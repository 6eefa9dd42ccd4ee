package catalog

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"

	"github.com/peerd/peerd/catalog/configentry"
)

// fsm applies committed raft log entries to a Store. Apply is deterministic:
// it reads no clock, no randomness and never depends on map iteration order.
type fsm struct {
	store *Store
}

var _ raft.FSM = (*fsm)(nil)

// Apply implements raft.FSM. It returns an *ApplyResult.
func (f *fsm) Apply(l *raft.Log) any {
	res := &ApplyResult{Index: l.Index, OK: true}
	ok, err := f.apply(l.Index, l.Data)
	res.OK = ok
	if err != nil {
		res.Err = err.Error()
	}
	return res
}

func (f *fsm) apply(idx uint64, data []byte) (bool, error) {
	cmd, err := DecodeCommand(data)
	if err != nil {
		return false, err
	}
	s := f.store
	switch cmd.Type {
	case CmdRegister:
		if cmd.Register == nil {
			return false, errors.New("register command without a request")
		}
		return true, s.Register(idx, cmd.Register)
	case CmdRegisterBatch:
		return true, s.RegisterBatch(idx, cmd.Registers)
	case CmdSyncNode:
		if cmd.SyncNode == nil {
			return false, errors.New("sync-node command without a request")
		}
		return true, s.SyncNode(idx, cmd.SyncNode)
	case CmdDeregisterBatch:
		return true, s.DeregisterBatch(idx, cmd.Deregisters)
	case CmdPeeringWrite:
		if cmd.Peering == nil {
			return false, errors.New("peering-write command without a request")
		}
		return true, s.PeeringWrite(idx, cmd.Peering)
	case CmdPeeringSecrets:
		if cmd.PeeringSecrets == nil {
			return false, errors.New("peering-secrets command without a request")
		}
		return true, s.PeeringSecretsUpdate(idx, cmd.PeeringSecrets)
	case CmdPeeringDelete:
		if cmd.PeeringDelete == nil {
			return false, errors.New("peering-delete command without a request")
		}
		return true, s.PeeringDelete(idx, cmd.PeeringDelete.Name)
	case CmdTrustBundle:
		if cmd.TrustBundle == nil {
			return false, errors.New("trust-bundle command without a bundle")
		}
		return true, s.TrustBundleWrite(idx, cmd.TrustBundle)
	case CmdMetaSet:
		if cmd.MetaSet == nil {
			return false, errors.New("meta-set command without a request")
		}
		return true, s.MetaSet(idx, cmd.MetaSet)
	case CmdCARoots:
		if cmd.CARoots == nil {
			return false, errors.New("ca-roots command without roots")
		}
		return true, s.CARootsSet(idx, cmd.CARoots)
	case CmdVirtualIPs:
		if cmd.VirtualIPs == nil {
			return false, errors.New("virtual-ips command without a request")
		}
		return true, s.VirtualIPsUpdate(idx, cmd.VirtualIPs)
	case CmdDeregister:
		if cmd.Deregister == nil {
			return false, errors.New("deregister command without a request")
		}
		return true, s.Deregister(idx, cmd.Deregister)
	case CmdCheckStatus:
		r := cmd.CheckStatus
		if r == nil {
			return false, errors.New("check-status command without a request")
		}
		return true, s.UpdateCheckStatus(idx, r.PeerName, r.Node, r.CheckID, r.Status, r.Output)
	case CmdConfigSet:
		r := cmd.ConfigEntry
		if r == nil {
			return false, errors.New("config-set command without a request")
		}
		entry, err := configentry.DecodeKind(r.Kind, r.Entry)
		if err != nil {
			return false, fmt.Errorf("decode config entry %s/%s: %w", r.Kind, r.Name, err)
		}
		return s.ConfigSet(idx, entry, r.CAS, r.Index)
	case CmdConfigDelete:
		r := cmd.ConfigEntry
		if r == nil {
			return false, errors.New("config-delete command without a request")
		}
		return s.ConfigDelete(idx, r.Kind, r.Name, r.CAS, r.Index)
	default:
		// A newer server wrote a command this one does not know. Failing the
		// entry (rather than panicking) keeps this server running; the
		// operator upgrades it.
		return false, fmt.Errorf("unknown command type %q: upgrade this server", cmd.Type)
	}
}

// snapshotRecord is one line of a snapshot: exactly one field is set.
type snapshotRecord struct {
	Node        *nodeRow            `json:",omitempty"`
	Service     *serviceRow         `json:",omitempty"`
	Check       *checkRow           `json:",omitempty"`
	Config      *configSnapshot     `json:",omitempty"`
	Index       *indexRow           `json:",omitempty"`
	Peering     *Peering            `json:",omitempty"`
	Secrets     *PeeringSecrets     `json:",omitempty"`
	TrustBundle *PeeringTrustBundle `json:",omitempty"`
	CARoot      *CARoot             `json:",omitempty"`
	Meta        *metaRow            `json:",omitempty"`
	VirtualIP   *VirtualIP          `json:",omitempty"`
}

type configSnapshot struct {
	Kind  string
	Entry json.RawMessage
}

// Snapshot implements raft.FSM: it takes memdb's O(1) immutable snapshot; the
// IO happens in Persist.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	db, _ := f.store.current()
	return &fsmSnapshot{db: db.Snapshot()}, nil
}

type fsmSnapshot struct {
	db *memdb.MemDB
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.write(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) write(w io.Writer) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	tx := s.db.Txn(false)
	defer tx.Abort()
	for _, table := range []string{tableIndex, tableNodes, tableServices, tableChecks, tableConfig,
		tablePeerings, tableSecrets, tableTrustBundles, tableCARoots, tableMeta, tableVirtualIPs} {
		it, err := tx.Get(table, "id")
		if err != nil {
			return fmt.Errorf("read table %s: %w", table, err)
		}
		for raw := it.Next(); raw != nil; raw = it.Next() {
			rec, err := snapshotRecordOf(raw)
			if err != nil {
				return err
			}
			if err := enc.Encode(rec); err != nil {
				return err
			}
		}
	}
	return bw.Flush()
}

func (s *fsmSnapshot) Release() {}

// Restore implements raft.FSM: it builds a new database from the snapshot and
// swaps it in, dropping all previous state.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	tx := db.Txn(true)
	defer tx.Abort()
	dec := json.NewDecoder(bufio.NewReader(rc))
	for n := 1; ; n++ {
		var rec snapshotRecord
		if err := dec.Decode(&rec); err == io.EOF {
			break
		} else if err != nil {
			return fmt.Errorf("restore snapshot record %d: %w", n, err)
		}
		var table string
		var row any
		switch {
		case rec.Index != nil:
			table, row = tableIndex, rec.Index
		case rec.Node != nil:
			table, row = tableNodes, rec.Node
		case rec.Service != nil:
			table, row = tableServices, rec.Service
		case rec.Check != nil:
			table, row = tableChecks, rec.Check
		case rec.Peering != nil:
			table, row = tablePeerings, rec.Peering
		case rec.Secrets != nil:
			table, row = tableSecrets, rec.Secrets
		case rec.TrustBundle != nil:
			table, row = tableTrustBundles, rec.TrustBundle
		case rec.CARoot != nil:
			table, row = tableCARoots, rec.CARoot
		case rec.Meta != nil:
			table, row = tableMeta, rec.Meta
		case rec.VirtualIP != nil:
			table, row = tableVirtualIPs, rec.VirtualIP
		case rec.Config != nil:
			entry, err := configentry.DecodeKind(rec.Config.Kind, rec.Config.Entry)
			if err != nil {
				return fmt.Errorf("restore snapshot record %d: %w", n, err)
			}
			table, row = tableConfig, &configRow{Kind: entry.GetKind(), Name: entry.GetName(), Entry: entry}
		default:
			return fmt.Errorf("restore snapshot record %d: empty record", n)
		}
		if err := tx.Insert(table, row); err != nil {
			return fmt.Errorf("restore snapshot record %d into %s: %w", n, table, err)
		}
	}
	tx.Commit()
	f.store.replace(db)
	return nil
}

// snapshotRecordOf wraps one row of any table in its snapshot record.
func snapshotRecordOf(raw any) (*snapshotRecord, error) {
	rec := &snapshotRecord{}
	switch r := raw.(type) {
	case *indexRow:
		rec.Index = r
	case *nodeRow:
		rec.Node = r
	case *serviceRow:
		rec.Service = r
	case *checkRow:
		rec.Check = r
	case *Peering:
		rec.Peering = r
	case *PeeringSecrets:
		rec.Secrets = r
	case *PeeringTrustBundle:
		rec.TrustBundle = r
	case *CARoot:
		rec.CARoot = r
	case *metaRow:
		rec.Meta = r
	case *VirtualIP:
		rec.VirtualIP = r
	case *configRow:
		b, err := json.Marshal(r.Entry)
		if err != nil {
			return nil, fmt.Errorf("encode config entry %s/%s: %w", r.Kind, r.Name, err)
		}
		rec.Config = &configSnapshot{Kind: r.Kind, Entry: b}
	default:
		return nil, fmt.Errorf("row type %T has no snapshot record", raw)
	}
	return rec, nil
}
