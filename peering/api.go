package peering

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-memdb"
	"google.golang.org/grpc"

	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/catalog/configentry"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/peering/pbpeering"
)

// ValidatePeerName returns an error matching ErrInvalidPeerName unless name
// is a lowercase DNS label, with Consul's wording.
func ValidatePeerName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: the peer name is required", ErrInvalidPeerName)
	}
	if !configentry.ValidPeerName(name) {
		return &wrapped{
			msg: fmt.Sprintf("%s is not a valid peer name: %s", short(name), configentry.PeerNameRule),
			err: ErrInvalidPeerName,
		}
	}
	return nil
}

// PeeringInfo is one peering as the API shows it: the stored row plus the
// leader's live view of its stream.
type PeeringInfo struct {
	ID        string
	Name      string
	Partition string
	Meta      map[string]string
	// State is derived: ACTIVE or FAILING from the stream when the stored
	// state is ACTIVE or ESTABLISHING.
	State                 string
	PeerID                string
	PeerCAPems            []string
	PeerServerName        string
	PeerServerAddresses   []string
	ManualServerAddresses []string
	PeerTrustDomain       string
	// ShouldDial is true on the dialer, false on the acceptor.
	ShouldDial bool
	// DeletedAt is when deletion began; zero if not deleting.
	DeletedAt    time.Time
	Remote       state.PeeringRemote
	StreamStatus StreamStatus
	// StreamSecret is the acceptor's stream secret status; nil on the
	// dialer.
	StreamSecret *StreamSecretStatus
	CreateIndex  uint64
	ModifyIndex  uint64
}

// StreamSecretStatus says how an acceptor's stream secret stands.
type StreamSecretStatus struct {
	// BoundTrustDomain is the trust domain of the dialer certificate the
	// active secret is bound to; empty = unbound (the secret alone opens
	// the stream, as with a Consul dialer).
	BoundTrustDomain string
	// ActiveSince is when the active secret was promoted; zero if none yet.
	ActiveSince time.Time
	// RotationPending is set while a rotated secret waits for the dialer.
	RotationPending bool
}

// StreamStatus is the leader's view of a peering's replication stream.
// Times are zero until the event happens.
type StreamStatus struct {
	Connected        bool
	ImportedServices []string
	ExportedServices []string
	LastHeartbeat    time.Time
	LastReceive      time.Time
	LastSend         time.Time
	LastError        string
	LastErrorAt      time.Time
	ReplicationLag   time.Duration
	Reconnects       int
	// QuotaRefusals and ImportRefusals count the peer's messages refused
	// for a quota (by quota) or as invalid (by reason); LastRefusal is the
	// latest one's message (see Status).
	QuotaRefusals  map[string]uint64
	ImportRefusals map[string]uint64
	LastRefusal    string
	LastRefusalAt  time.Time
}

// ImportedService is one service imported from a peer.
type ImportedService struct {
	Service    string
	SourcePeer string
}

// Read returns the peering named name with its live status, or nil if there
// is none.
func (s *Server) Read(ctx context.Context, name string) (*PeeringInfo, error) {
	if err := ValidatePeerName(name); err != nil {
		return nil, err
	}
	if !s.cfg.Cluster.IsLeader() {
		var resp *pbpeering.PeeringReadResponse
		err := s.forward(ctx, func(ctx context.Context, c pbpeering.PeeringServiceClient, opts ...grpc.CallOption) (err error) {
			resp, err = c.PeeringRead(ctx, &pbpeering.PeeringReadRequest{Name: name}, opts...)
			return err
		})
		if err != nil || resp.GetPeering() == nil {
			return nil, err
		}
		return infoFromProto(resp.GetPeering()), nil
	}
	st, err := s.requireServer()
	if err != nil {
		return nil, err
	}
	_, p, err := st.Peering(nil, name)
	if err != nil || p == nil {
		return nil, err
	}
	_, exported, err := st.ExportedServices(nil)
	if err != nil {
		return nil, err
	}
	return s.info(st, p, exported)
}

// List returns every peering, sorted by name, with its live status.
func (s *Server) List(ctx context.Context) ([]*PeeringInfo, error) {
	if !s.cfg.Cluster.IsLeader() {
		var resp *pbpeering.PeeringListResponse
		err := s.forward(ctx, func(ctx context.Context, c pbpeering.PeeringServiceClient, opts ...grpc.CallOption) (err error) {
			resp, err = c.PeeringList(ctx, &pbpeering.PeeringListRequest{}, opts...)
			return err
		})
		if err != nil {
			return nil, err
		}
		out := make([]*PeeringInfo, 0, len(resp.GetPeerings()))
		for _, p := range resp.GetPeerings() {
			out = append(out, infoFromProto(p))
		}
		return out, nil
	}
	st, err := s.requireServer()
	if err != nil {
		return nil, err
	}
	_, rows, err := st.Peerings(nil)
	if err != nil {
		return nil, err
	}
	_, exported, err := st.ExportedServices(nil)
	if err != nil {
		return nil, err
	}
	out := make([]*PeeringInfo, 0, len(rows))
	for _, p := range rows {
		info, err := s.info(st, p, exported)
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// info combines a stored peering with the tracker's status.
func (s *Server) info(st *state.Store, p *state.Peering, exported []state.ExportedService) (*PeeringInfo, error) {
	ts := s.tracker.get(p.ID)
	imported := ts.ImportedServices
	if len(imported) == 0 {
		_, svcs, err := st.Services(nil, p.Name)
		if err != nil {
			return nil, err
		}
		imported = slices.Sorted(maps.Keys(svcs))
	}
	info := &PeeringInfo{
		ID:                    p.ID,
		Name:                  p.Name,
		Partition:             p.Partition,
		Meta:                  maps.Clone(p.Meta),
		State:                 ts.State(p.State, s.cfg.Now(), s.cfg.HeartbeatTimeout),
		PeerID:                p.PeerID,
		PeerCAPems:            slices.Clone(p.PeerCAPems),
		PeerServerName:        p.PeerServerName,
		PeerServerAddresses:   slices.Clone(p.PeerServerAddresses),
		ManualServerAddresses: slices.Clone(p.ManualServerAddresses),
		PeerTrustDomain:       p.PeerTrustDomain,
		ShouldDial:            p.ShouldDial,
		Remote:                p.Remote,
		StreamStatus: StreamStatus{
			Connected:        ts.Connected,
			ImportedServices: imported,
			ExportedServices: exportsOf(exported, p),
			LastHeartbeat:    ts.LastHeartbeat,
			LastReceive:      ts.LastReceive,
			LastSend:         ts.LastSend,
			LastError:        ts.LastError,
			LastErrorAt:      ts.LastErrorAt,
			ReplicationLag:   ts.ReplicationLag,
			Reconnects:       ts.Reconnects,
			QuotaRefusals:    ts.QuotaRefusals,
			ImportRefusals:   ts.ImportRefusals,
			LastRefusal:      ts.LastRefusal,
			LastRefusalAt:    ts.LastRefusalAt,
		},
		CreateIndex: p.CreateIndex,
		ModifyIndex: p.ModifyIndex,
	}
	if info.Partition == "" {
		info.Partition = "default"
	}
	if !p.ShouldDial {
		sec, err := st.PeeringSecrets(p.ID)
		if err != nil {
			return nil, err
		}
		if sec != nil {
			ss := &StreamSecretStatus{RotationPending: sec.PendingRotated && sec.PendingStreamSecret != ""}
			if sec.ActiveIdentity != nil {
				ss.BoundTrustDomain = sec.ActiveIdentity.TrustDomain
			}
			if sec.ActiveStreamSecret != "" && sec.ActiveSince != 0 {
				ss.ActiveSince = time.Unix(0, sec.ActiveSince).UTC()
			}
			info.StreamSecret = ss
		}
	}
	if p.DeletedAt != 0 {
		info.DeletedAt = time.Unix(0, p.DeletedAt).UTC()
	}
	return info, nil
}

// Delete marks the peering DELETING; the leader then tells the peer, purges
// the imported data in batches and removes the row. Deleting a peering that
// is being deleted already succeeds; a missing one is ErrPeeringNotFound.
func (s *Server) Delete(ctx context.Context, name string) error {
	if err := ValidatePeerName(name); err != nil {
		return err
	}
	if !s.cfg.Cluster.IsLeader() {
		return s.forward(ctx, func(ctx context.Context, c pbpeering.PeeringServiceClient, opts ...grpc.CallOption) error {
			_, err := c.PeeringDelete(ctx, &pbpeering.PeeringDeleteRequest{Name: name}, opts...)
			return err
		})
	}
	st, err := s.requireServer()
	if err != nil {
		return err
	}
	_, p, err := st.Peering(nil, name)
	if err != nil {
		return err
	}
	if p == nil {
		return notFound(name)
	}
	if p.State == state.PeeringDeleting {
		return nil
	}
	cp := *p
	cp.State = state.PeeringDeleting
	cp.DeletedAt = s.cfg.Now().UnixNano()
	if _, err := s.cfg.Cluster.Apply(ctx, &catalog.Command{Type: catalog.CmdPeeringWrite,
		Peering: &state.PeeringWriteRequest{Peering: &cp}}); err != nil {
		return fmt.Errorf("delete peering %q: %w", name, err)
	}
	s.log.Info("peering marked for deletion", "peer", name, "peering_id", p.ID)
	return nil
}

// TrustBundleRead returns the CA roots the peer named name has replicated
// to us, or nil if it has sent none.
func (s *Server) TrustBundleRead(ctx context.Context, name string) (*state.PeeringTrustBundle, error) {
	if err := ValidatePeerName(name); err != nil {
		return nil, err
	}
	if !s.cfg.Cluster.IsLeader() {
		var resp *pbpeering.TrustBundleReadResponse
		err := s.forward(ctx, func(ctx context.Context, c pbpeering.PeeringServiceClient, opts ...grpc.CallOption) (err error) {
			resp, err = c.TrustBundleRead(ctx, &pbpeering.TrustBundleReadRequest{Name: name}, opts...)
			return err
		})
		if err != nil || resp.GetBundle() == nil {
			return nil, err
		}
		b := resp.GetBundle()
		return &state.PeeringTrustBundle{
			PeerName: b.GetPeerName(), TrustDomain: b.GetTrustDomain(), RootPEMs: b.GetRootPems(),
			ExportedPartition: b.GetExportedPartition(),
			RaftIndex:         state.RaftIndex{CreateIndex: b.GetCreateIndex(), ModifyIndex: b.GetModifyIndex()},
		}, nil
	}
	st, err := s.requireServer()
	if err != nil {
		return nil, err
	}
	_, b, err := st.TrustBundle(nil, name)
	return b, err
}

// ImportedServicesFromStore returns every service imported from a peer,
// sorted by service then peer, and the index of the data read, adding what
// it read to ws.
func ImportedServicesFromStore(ws memdb.WatchSet, st *state.Store) (uint64, []ImportedService, error) {
	idx, peerings, err := st.Peerings(ws)
	if err != nil {
		return 0, nil, err
	}
	var out []ImportedService
	for _, p := range peerings {
		sidx, svcs, err := st.Services(ws, p.Name)
		if err != nil {
			return 0, nil, fmt.Errorf("services imported from %q: %w", p.Name, err)
		}
		idx = max(idx, sidx)
		for name := range svcs {
			out = append(out, ImportedService{Service: name, SourcePeer: p.Name})
		}
	}
	slices.SortFunc(out, func(a, b ImportedService) int {
		if c := strings.Compare(a.Service, b.Service); c != 0 {
			return c
		}
		return strings.Compare(a.SourcePeer, b.SourcePeer)
	})
	return idx, out, nil
}

// exportsOf returns the sorted names of the services exported to peering
// p: none once it no longer replicates (DELETING or TERMINATED), whatever
// exported-services still says.
func exportsOf(list []state.ExportedService, p *state.Peering) []string {
	if p.State == state.PeeringDeleting || p.State == state.PeeringTerminated {
		return nil
	}
	return state.ServicesExportedTo(list, p.Name)
}
