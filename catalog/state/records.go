package state

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/go-memdb"

	"github.com/peerd/peerd/catalog/configentry"
)

// The record format: the whole state as JSON records, one a line, each
// holding one row. Raft snapshots, `peerd snapshot save` files and the
// clients' mirror all use it.

// record is one line of the format: exactly one field is set.
type record struct {
	Node         *nodeRow            `json:",omitempty"`
	Service      *serviceRow         `json:",omitempty"`
	Check        *checkRow           `json:",omitempty"`
	Config       *configRecord       `json:",omitempty"`
	Index        *indexRow           `json:",omitempty"`
	Peering      *Peering            `json:",omitempty"`
	Secrets      *PeeringSecrets     `json:",omitempty"`
	TrustBundle  *PeeringTrustBundle `json:",omitempty"`
	CARoot       *CARoot             `json:",omitempty"`
	Meta         *metaRow            `json:",omitempty"`
	VirtualIP    *VirtualIP          `json:",omitempty"`
	JoinToken    *JoinToken          `json:",omitempty"`
	ACLToken     *ACLToken           `json:",omitempty"`
	ACLPolicy    *ACLPolicy          `json:",omitempty"`
	ACLRole      *ACLRole            `json:",omitempty"`
	ACLBootstrap *aclBootstrapRow    `json:",omitempty"`
}

type configRecord struct {
	Kind  string
	Entry json.RawMessage
}

// snapshotTables are the tables a snapshot holds, in the order it writes
// them.
var snapshotTables = [...]string{tableIndex, tableNodes, tableServices, tableChecks, tableConfig,
	tablePeerings, tableSecrets, tableTrustBundles, tableCARoots, tableMeta, tableVirtualIPs, tableJoinTokens,
	tableACLPolicies, tableACLRoles, tableACLTokens, tableACLBootstrap}

// Snapshot is a point-in-time, read-only copy of the whole state. Taking one
// is O(1) (memdb's immutable radix trees); Write does the IO.
type Snapshot struct {
	db *memdb.MemDB
}

// Snapshot returns a copy of the state as it is now.
func (s *Store) Snapshot() *Snapshot {
	db, _ := s.current()
	return &Snapshot{db: db.Snapshot()}
}

// Write writes every row of every table to w in the record format, secrets
// included: it is what a server persists, never what a client is sent.
func (sn *Snapshot) Write(w io.Writer) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	tx := sn.db.Txn(false)
	defer tx.Abort()
	for _, table := range snapshotTables {
		it, err := tx.Get(table, "id")
		if err != nil {
			return fmt.Errorf("read table %s: %w", table, err)
		}
		for raw := it.Next(); raw != nil; raw = it.Next() {
			rec, err := recordOf(raw)
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

// Restore replaces the whole state with the records read from r (written by
// Snapshot.Write or WriteMirror) and wakes every watcher. It reads all of r
// before it changes anything: on an error the state is left as it was.
func (s *Store) Restore(r io.Reader) error {
	db, err := decodeRecords(r)
	if err != nil {
		return err
	}
	s.replace(db)
	return nil
}

func decodeRecords(r io.Reader) (*memdb.MemDB, error) {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		return nil, fmt.Errorf("restore snapshot: %w", err)
	}
	tx := db.Txn(true)
	defer tx.Abort()
	dec := json.NewDecoder(bufio.NewReader(r))
	for n := 1; ; n++ {
		var rec record
		if err := dec.Decode(&rec); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("restore snapshot record %d: %w", n, err)
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
		case rec.JoinToken != nil:
			table, row = tableJoinTokens, rec.JoinToken
		case rec.ACLToken != nil:
			table, row = tableACLTokens, rec.ACLToken
		case rec.ACLPolicy != nil:
			table, row = tableACLPolicies, rec.ACLPolicy
		case rec.ACLRole != nil:
			table, row = tableACLRoles, rec.ACLRole
		case rec.ACLBootstrap != nil:
			table, row = tableACLBootstrap, rec.ACLBootstrap
		case rec.Config != nil:
			entry, err := configentry.DecodeKind(rec.Config.Kind, rec.Config.Entry)
			if err != nil {
				return nil, fmt.Errorf("restore snapshot record %d: %w", n, err)
			}
			table, row = tableConfig, &configRow{Kind: entry.GetKind(), Name: entry.GetName(), Entry: entry}
		default:
			return nil, fmt.Errorf("restore snapshot record %d: empty record", n)
		}
		if err := completeRow(row); err != nil {
			return nil, fmt.Errorf("restore snapshot record %d (%s): %w", n, table, err)
		}
		if err := tx.Insert(table, row); err != nil {
			return nil, fmt.Errorf("restore snapshot record %d into %s: %w", n, table, err)
		}
	}
	tx.Commit()
	return db, nil
}

// completeRow refuses a row whose indexes would read a missing part: a
// snapshot file or a mirror stream is external input, and a record such as
// {"Node":{}} must be an error, not a crash of the server restoring it.
func completeRow(row any) error {
	switch r := row.(type) {
	case *nodeRow:
		if r.Node == nil {
			return errors.New("a node record without its node")
		}
	case *serviceRow:
		if r.Service == nil {
			return errors.New("a service record without its service")
		}
	case *checkRow:
		if r.Check == nil {
			return errors.New("a check record without its check")
		}
	case *ACLToken:
		if r.AccessorID == "" || r.SecretHash == "" {
			return errors.New("an ACL token record without its AccessorID or secret hash")
		}
		if r.SecretID != "" && HashSecret(r.SecretID) != r.SecretHash {
			return errors.New("an ACL token record whose secret hash is not its SecretID's")
		}
	case *ACLPolicy:
		if r.ID == "" || r.Name == "" {
			return errors.New("an ACL policy record without its ID or Name")
		}
	case *ACLRole:
		if r.ID == "" || r.Name == "" {
			return errors.New("an ACL role record without its ID or Name")
		}
	}
	return nil
}

// recordOf wraps one row of any table in its record.
func recordOf(raw any) (*record, error) {
	rec := &record{}
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
	case *JoinToken:
		rec.JoinToken = r
	case *ACLToken:
		rec.ACLToken = r
	case *ACLPolicy:
		rec.ACLPolicy = r
	case *ACLRole:
		rec.ACLRole = r
	case *aclBootstrapRow:
		rec.ACLBootstrap = r
	case *configRow:
		b, err := json.Marshal(r.Entry)
		if err != nil {
			return nil, fmt.Errorf("encode config entry %s/%s: %w", r.Kind, r.Name, err)
		}
		rec.Config = &configRecord{Kind: r.Kind, Entry: b}
	default:
		return nil, fmt.Errorf("row type %T has no snapshot record", raw)
	}
	return rec, nil
}

// ---- the mirror: what a client node may see ----

// mirrorTables are the snapshot's tables in its order, less the peering
// secrets and the join tokens. The ACL tables are mirrored so that client
// nodes resolve tokens, but a token without its SecretID: a client finds
// it by the SHA-256 of the secret presented, and holds no secret.
var mirrorTables = [...]string{tableIndex, tableNodes, tableServices, tableChecks, tableConfig,
	tablePeerings, tableTrustBundles, tableCARoots, tableMeta, tableVirtualIPs,
	tableACLPolicies, tableACLRoles, tableACLTokens, tableACLBootstrap}

// WriteMirror writes to w, in the record format, what a client node may
// see: every table but the peering secrets and the join tokens, each CA
// root without its private key. It returns the highest index written and adds to ws what fires when
// any of it changes. It reads one transaction, so the watches cover exactly
// the state written.
func (s *Store) WriteMirror(w io.Writer, ws memdb.WatchSet) (uint64, error) {
	enc := json.NewEncoder(w)
	tx := s.read(ws)
	defer tx.Abort()
	var index uint64
	for _, table := range mirrorTables {
		it, err := tx.Get(table, "id")
		if err != nil {
			return 0, fmt.Errorf("read table %s: %w", table, err)
		}
		if ws != nil {
			ws.Add(it.WatchCh())
		}
		for raw := it.Next(); raw != nil; raw = it.Next() {
			rec, ok, err := mirrorRecord(raw)
			if err != nil {
				return 0, fmt.Errorf("table %s: %w", table, err)
			}
			if !ok {
				continue
			}
			if rec.Index != nil {
				index = max(index, rec.Index.Index)
			}
			if err := enc.Encode(rec); err != nil {
				return 0, fmt.Errorf("table %s: %w", table, err)
			}
		}
	}
	return index, nil
}

// mirrorRecord is the record of one row, stripped of secrets; ok is false
// for a row that is not mirrored at all.
func mirrorRecord(raw any) (rec *record, ok bool, err error) {
	switch r := raw.(type) {
	case *indexRow:
		if r.Table == tableSecrets || r.Table == tableJoinTokens {
			return nil, false, nil
		}
	case *PeeringSecrets, *JoinToken:
		return nil, false, nil
	case *nodeRow, *serviceRow, *checkRow, *configRow, *Peering, *PeeringTrustBundle, *metaRow, *VirtualIP,
		*ACLPolicy, *ACLRole, *aclBootstrapRow:
	case *ACLToken:
		cp := *r
		cp.SecretID = ""
		raw = &cp
	case *CARoot:
		cp := *r // rows are shared with the store: never modify one
		cp.KeyPEM = ""
		raw = &cp
	default:
		// A new table or row type must be added here deliberately, after
		// deciding what of it a client may see.
		return nil, false, fmt.Errorf("row type %T is not mirrored", raw)
	}
	rec, err = recordOf(raw)
	if err != nil {
		return nil, false, err
	}
	return rec, true, nil
}

// RestoreMirror is Restore for a state written by WriteMirror: a state that
// holds what WriteMirror never writes (peering secrets, a CA private key)
// comes from a broken server and is refused, leaving the store as it was.
// Errors begin with "decode state" or "refuse state".
func (s *Store) RestoreMirror(r io.Reader) error {
	db, err := decodeRecords(r)
	if err != nil {
		return fmt.Errorf("decode state: %w", err)
	}
	if err := checkNoSecrets(db); err != nil {
		return err
	}
	s.replace(db)
	return nil
}

// checkNoSecrets refuses a state that holds what servers never send.
func checkNoSecrets(db *memdb.MemDB) error {
	tx := db.Txn(false)
	defer tx.Abort()
	raw, err := tx.First(tableSecrets, "id")
	if err != nil {
		return fmt.Errorf("refuse state: read peering secrets: %w", err)
	}
	if raw != nil {
		return errors.New("refuse state: it holds peering secrets")
	}
	it, err := tx.Get(tableCARoots, "id")
	if err != nil {
		return fmt.Errorf("refuse state: read CA roots: %w", err)
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if r := raw.(*CARoot); r.KeyPEM != "" {
			return fmt.Errorf("refuse state: CA root %s carries its private key", r.ID)
		}
	}
	it, err = tx.Get(tableACLTokens, "id")
	if err != nil {
		return fmt.Errorf("refuse state: read ACL tokens: %w", err)
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if r := raw.(*ACLToken); r.SecretID != "" {
			return fmt.Errorf("refuse state: ACL token %s carries its SecretID", r.AccessorID)
		}
	}
	return nil
}
