package catalog

import (
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/raft"

	"github.com/peerd/peerd/catalog/configentry"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/seal"
)

// fsm applies committed raft log entries to a state.Store. Apply is deterministic:
// it reads no clock, no randomness and never depends on map iteration order.
type fsm struct {
	store *state.Store
	// secrets opens sealed entries and snapshots, and seals snapshots
	// (nil: sealing off; plaintext is read either way).
	secrets *seal.Key
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
	data, err := f.secrets.Open(data)
	if err != nil {
		return false, err
	}
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
	case CmdJoinToken:
		if cmd.JoinToken == nil {
			return false, errors.New("join-token command without a request")
		}
		return true, s.JoinTokenApply(idx, cmd.JoinToken)
	case CmdACL:
		if cmd.ACL == nil {
			return false, errors.New("acl command without a request")
		}
		return true, s.ACLApply(idx, cmd.ACL)
	default:
		// A newer server wrote a command this one does not know. Failing the
		// entry (rather than panicking) keeps this server running; the
		// operator upgrades it.
		return false, fmt.Errorf("unknown command type %q: upgrade this server", cmd.Type)
	}
}

// Snapshot implements raft.FSM: it takes the store's O(1) immutable
// snapshot; the IO happens in Persist.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{snap: f.store.Snapshot(), secrets: f.secrets}, nil
}

type fsmSnapshot struct {
	snap    *state.Snapshot
	secrets *seal.Key
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := writeSealed(sink, s.secrets, s.snap.Write); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

// writeSealed runs write on w, through key's sealing writer when there is a
// key.
func writeSealed(w io.Writer, key *seal.Key, write func(io.Writer) error) error {
	if key == nil {
		return write(w)
	}
	sw, err := key.SealWriter(w)
	if err != nil {
		return err
	}
	if err := write(sw); err != nil {
		return err
	}
	return sw.Close()
}

func (s *fsmSnapshot) Release() {}

// Restore implements raft.FSM: it builds a new state from the snapshot and
// swaps it in, dropping all previous state.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	r, err := f.secrets.OpenReader(rc)
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	return f.store.Restore(r)
}
