package catalog

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/raft"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/seal"
)

// snapshotFormat identifies peerd's snapshot files.
const snapshotFormat = "peerd-snapshot/1"

// maxSnapshotBytes bounds a restored snapshot once decompressed.
const maxSnapshotBytes = 1 << 30

// SnapshotHeader is the first line of a snapshot file.
type SnapshotHeader struct {
	Format     string
	Datacenter string
	// Index is the raft index the state was taken at.
	Index   uint64
	Created time.Time
}

// SaveSnapshot writes a point-in-time copy of the replicated state to w as a
// gzip stream (a header line, then the state store's records). It is read
// from this server's store, so call it on the leader for the latest state.
func (c *Cluster) SaveSnapshot(w io.Writer) (SnapshotHeader, error) {
	if c.store == nil {
		return SnapshotHeader{}, errors.New("save snapshot: only servers hold the state")
	}
	snap := c.store.Snapshot()
	h := SnapshotHeader{Format: snapshotFormat, Datacenter: c.meta.Datacenter, Index: c.raft.AppliedIndex(), Created: time.Now().UTC()}
	zw := gzip.NewWriter(w)
	if err := json.NewEncoder(zw).Encode(&h); err != nil {
		return h, fmt.Errorf("save snapshot: %w", err)
	}
	// The records are sealed like raft's own snapshots: the file holds the
	// CA key and the peering secrets, and opens only on this cluster's
	// servers.
	if err := writeSealed(zw, c.cfg.Secrets, snap.Write); err != nil {
		return h, fmt.Errorf("save snapshot: %w", err)
	}
	if err := zw.Close(); err != nil {
		return h, fmt.Errorf("save snapshot: %w", err)
	}
	return h, nil
}

// RestoreSnapshot replaces the whole replicated state with a snapshot made by
// SaveSnapshot. It runs on the leader (raft then installs the state on every
// follower) and is meant for disaster recovery: writes made since the
// snapshot are lost.
func (c *Cluster) RestoreSnapshot(r io.Reader) (SnapshotHeader, error) {
	var h SnapshotHeader
	if c.raft == nil || c.raft.State() != raft.Leader {
		return h, fmt.Errorf("restore snapshot: %w: send it to the leader", ErrNoLeader)
	}
	h, body, err := readSnapshot(r, c.cfg.Secrets)
	if err != nil {
		return h, err
	}
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: h.Index, Term: 1, Size: int64(len(body))}
	if err := c.raft.Restore(meta, bytes.NewReader(body), 2*time.Minute); err != nil {
		return h, fmt.Errorf("restore snapshot: %w", err)
	}
	return h, nil
}

// readSnapshot reads a snapshot file (an operator's upload: external input)
// and checks all of it before raft may take it over: the gzip stream, the
// header, the seal (key is the cluster's; nil = unsealed records) and every
// record, decoded into a scratch store. It returns the header and the
// sealed records, which raft installs as they are.
func readSnapshot(r io.Reader, key *seal.Key) (SnapshotHeader, []byte, error) {
	var h SnapshotHeader
	zr, err := gzip.NewReader(r)
	if err != nil {
		return h, nil, fmt.Errorf("restore snapshot: not a peerd snapshot (gzip): %w", err)
	}
	br := bufio.NewReader(io.LimitReader(zr, maxSnapshotBytes))
	line, err := br.ReadBytes('\n')
	if err != nil {
		return h, nil, fmt.Errorf("restore snapshot: read header: %w", err)
	}
	if err := json.Unmarshal(line, &h); err != nil || h.Format != snapshotFormat {
		return h, nil, fmt.Errorf("restore snapshot: not a %s file", snapshotFormat)
	}
	body, err := io.ReadAll(br)
	if err != nil {
		return h, nil, fmt.Errorf("restore snapshot: %w", err)
	}
	scratch, err := state.NewStore()
	if err != nil {
		return h, nil, err
	}
	plain, err := key.OpenReader(bytes.NewReader(body))
	if err != nil {
		return h, nil, fmt.Errorf("restore snapshot: %w (a snapshot opens only on the servers of the cluster that saved it)", err)
	}
	if err := scratch.Restore(plain); err != nil {
		return h, nil, fmt.Errorf("restore snapshot: %w", err)
	}
	return h, body, nil
}
