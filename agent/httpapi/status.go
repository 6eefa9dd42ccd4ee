package httpapi

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/peerd/peerd/catalog"
)

// maxSnapshotUpload bounds a snapshot restore body (compressed).
const maxSnapshotUpload = 256 << 20

func (s *Server) statusLeader(w http.ResponseWriter, r *http.Request) (any, error) {
	if !s.cluster.IsServer() {
		return nil, s.relay(w, r, true)
	}
	return s.cluster.Leader(), nil
}

func (s *Server) statusPeers(w http.ResponseWriter, r *http.Request) (any, error) {
	if !s.cluster.IsServer() {
		return nil, s.relay(w, r, true)
	}
	peers, err := s.cluster.Peers()
	if err != nil {
		return nil, err
	}
	if peers == nil {
		peers = []string{}
	}
	return peers, nil
}

// snapshotSave is GET /v1/snapshot: the replicated state as a gzip file,
// from the leader (or this server with ?stale).
func (s *Server) snapshotSave(w http.ResponseWriter, r *http.Request) (any, error) {
	// It holds the CA's private key and the peering secrets: management
	// only, as in Consul. A relayed request is checked again where it is
	// served.
	if err := s.requireManagement(r); err != nil {
		return nil, err
	}
	opts, err := parseQuery(r)
	if err != nil {
		return nil, err
	}
	if !s.cluster.IsServer() || (!s.cluster.IsLeader() && !opts.stale && r.Header.Get(relayedHeader) == "") {
		return nil, s.relay(w, r, opts.stale)
	}
	var buf bytes.Buffer
	h, err := s.cluster.SaveSnapshot(&buf)
	if err != nil {
		return nil, err
	}
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("X-Consul-Index", strconv.FormatUint(h.Index, 10))
	_, err = w.Write(buf.Bytes())
	return nil, err
}

// snapshotRestore is PUT /v1/snapshot: replace the state with a snapshot.
func (s *Server) snapshotRestore(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := s.requireManagement(r); err != nil {
		return nil, err
	}
	if !s.cluster.IsLeader() {
		if r.Header.Get(relayedHeader) != "" {
			return nil, fmt.Errorf("restore snapshot: %w", catalog.ErrNoLeader)
		}
		return nil, s.relay(w, r, false)
	}
	if _, err := s.cluster.RestoreSnapshot(r.Body); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) || errors.Is(err, catalog.ErrNoLeader) {
			return nil, err
		}
		return nil, errBadRequest("%v", err)
	}
	return nil, nil
}
