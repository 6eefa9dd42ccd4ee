package peering

import (
	"context"
	"crypto/x509"
	"strconv"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/peering/pbpeering"
)

// managementServer serves pbpeering.PeeringService on the internal gRPC
// server, for calls forwarded from other nodes.
type managementServer struct {
	pbpeering.UnimplementedPeeringServiceServer
	s *Server
}

var _ pbpeering.PeeringServiceServer = managementServer{}

// RegisterManagement registers the peering management service on the
// cluster's internal gRPC server.
func (s *Server) RegisterManagement(g *grpc.Server) {
	pbpeering.RegisterPeeringServiceServer(g, managementServer{s: s})
}

// incoming records in ctx how often the call was forwarded to get here.
func incoming(ctx context.Context) context.Context {
	n := 0
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(forwardedKey); len(v) > 0 {
			n, _ = strconv.Atoi(v[0])
		}
	}
	return context.WithValue(ctx, forwardCount{}, n)
}

func (m managementServer) GenerateToken(ctx context.Context, req *pbpeering.GenerateTokenRequest) (*pbpeering.GenerateTokenResponse, error) {
	tok, err := m.s.GenerateToken(incoming(ctx), GenerateTokenRequest{
		PeerName: req.GetPeerName(), Meta: req.GetMeta(), ServerExternalAddresses: req.GetServerExternalAddresses(),
		ExpiresIn: time.Duration(req.GetExpiresInSeconds()) * time.Second,
	})
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	return &pbpeering.GenerateTokenResponse{PeeringToken: tok}, nil
}

func (m managementServer) Establish(ctx context.Context, req *pbpeering.EstablishRequest) (*pbpeering.EstablishResponse, error) {
	err := m.s.Establish(incoming(ctx), EstablishRequest{PeerName: req.GetPeerName(), PeeringToken: req.GetPeeringToken(), Meta: req.GetMeta()})
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	return &pbpeering.EstablishResponse{}, nil
}

func (m managementServer) PeeringRead(ctx context.Context, req *pbpeering.PeeringReadRequest) (*pbpeering.PeeringReadResponse, error) {
	info, err := m.s.Read(incoming(ctx), req.GetName())
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	resp := &pbpeering.PeeringReadResponse{}
	if info != nil {
		resp.Peering = infoToProto(info)
		resp.Index = info.ModifyIndex
	}
	return resp, nil
}

func (m managementServer) PeeringList(ctx context.Context, _ *pbpeering.PeeringListRequest) (*pbpeering.PeeringListResponse, error) {
	infos, err := m.s.List(incoming(ctx))
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	resp := &pbpeering.PeeringListResponse{}
	for _, info := range infos {
		resp.Peerings = append(resp.Peerings, infoToProto(info))
		resp.Index = max(resp.Index, info.ModifyIndex)
	}
	return resp, nil
}

func (m managementServer) PeeringDelete(ctx context.Context, req *pbpeering.PeeringDeleteRequest) (*pbpeering.PeeringDeleteResponse, error) {
	if err := m.s.Delete(incoming(ctx), req.GetName()); err != nil {
		return nil, toStatus(ctx, err)
	}
	return &pbpeering.PeeringDeleteResponse{}, nil
}

func (m managementServer) TrustBundleRead(ctx context.Context, req *pbpeering.TrustBundleReadRequest) (*pbpeering.TrustBundleReadResponse, error) {
	b, err := m.s.TrustBundleRead(incoming(ctx), req.GetName())
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	resp := &pbpeering.TrustBundleReadResponse{}
	if b != nil {
		resp.Bundle = &pbpeering.PeeringTrustBundle{
			TrustDomain: b.TrustDomain, PeerName: b.PeerName, RootPems: b.RootPEMs, ExportedPartition: b.ExportedPartition,
			CreateIndex: b.CreateIndex, ModifyIndex: b.ModifyIndex,
		}
		resp.Index = b.ModifyIndex
	}
	return resp, nil
}

var stateToProto = map[string]pbpeering.PeeringState{
	state.PeeringPending:      pbpeering.PeeringState_PEERING_STATE_PENDING,
	state.PeeringEstablishing: pbpeering.PeeringState_PEERING_STATE_ESTABLISHING,
	state.PeeringActive:       pbpeering.PeeringState_PEERING_STATE_ACTIVE,
	state.PeeringFailing:      pbpeering.PeeringState_PEERING_STATE_FAILING,
	state.PeeringDeleting:     pbpeering.PeeringState_PEERING_STATE_DELETING,
	state.PeeringTerminated:   pbpeering.PeeringState_PEERING_STATE_TERMINATED,
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func infoToProto(i *PeeringInfo) *pbpeering.Peering {
	return &pbpeering.Peering{
		Id: i.ID, Name: i.Name, Partition: i.Partition, Meta: i.Meta, State: stateToProto[i.State],
		PeerId: i.PeerID, PeerCaPems: i.PeerCAPems, PeerServerName: i.PeerServerName,
		PeerServerAddresses: i.PeerServerAddresses, ManualServerAddresses: i.ManualServerAddresses,
		PeerTrustDomain: i.PeerTrustDomain, DeletedAtUnixNano: unixNano(i.DeletedAt),
		Remote:     &pbpeering.Remote{Partition: i.Remote.Partition, Datacenter: i.Remote.Datacenter},
		ShouldDial: i.ShouldDial,
		StreamStatus: &pbpeering.StreamStatus{
			ImportedServices: i.StreamStatus.ImportedServices, ExportedServices: i.StreamStatus.ExportedServices,
			LastHeartbeatUnixNano: unixNano(i.StreamStatus.LastHeartbeat), LastReceiveUnixNano: unixNano(i.StreamStatus.LastReceive),
			LastSendUnixNano: unixNano(i.StreamStatus.LastSend), LastError: i.StreamStatus.LastError,
			LastErrorUnixNano: unixNano(i.StreamStatus.LastErrorAt), ReplicationLagMs: i.StreamStatus.ReplicationLag.Milliseconds(),
			Connected: i.StreamStatus.Connected, Reconnects: uint64(max(i.StreamStatus.Reconnects, 0)),
			QuotaRefusals: i.StreamStatus.QuotaRefusals, ImportRefusals: i.StreamStatus.ImportRefusals,
			LastRefusal: i.StreamStatus.LastRefusal, LastRefusalUnixNano: unixNano(i.StreamStatus.LastRefusalAt),
		},
		ExportedServiceCount: uint64(len(i.StreamStatus.ExportedServices)),
		ImportedServiceCount: uint64(len(i.StreamStatus.ImportedServices)),
		CreateIndex:          i.CreateIndex, ModifyIndex: i.ModifyIndex,
		StreamSecret: secretStatusToProto(i.StreamSecret),
	}
}

func secretStatusToProto(s *StreamSecretStatus) *pbpeering.StreamSecretStatus {
	if s == nil {
		return nil
	}
	return &pbpeering.StreamSecretStatus{BoundTrustDomain: s.BoundTrustDomain, ActiveSinceUnixNano: unixNano(s.ActiveSince), RotationPending: s.RotationPending}
}

func secretStatusFromProto(p *pbpeering.StreamSecretStatus) *StreamSecretStatus {
	if p == nil {
		return nil
	}
	return &StreamSecretStatus{BoundTrustDomain: p.GetBoundTrustDomain(), ActiveSince: fromUnixNano(p.GetActiveSinceUnixNano()), RotationPending: p.GetRotationPending()}
}

func infoFromProto(p *pbpeering.Peering) *PeeringInfo {
	stored := ""
	for k, v := range stateToProto {
		if v == p.GetState() {
			stored = k
		}
	}
	ss := p.GetStreamStatus()
	return &PeeringInfo{
		ID: p.GetId(), Name: p.GetName(), Partition: p.GetPartition(), Meta: p.GetMeta(), State: stored,
		PeerID: p.GetPeerId(), PeerCAPems: p.GetPeerCaPems(), PeerServerName: p.GetPeerServerName(),
		PeerServerAddresses: p.GetPeerServerAddresses(), ManualServerAddresses: p.GetManualServerAddresses(),
		PeerTrustDomain: p.GetPeerTrustDomain(), ShouldDial: p.GetShouldDial(),
		DeletedAt: fromUnixNano(p.GetDeletedAtUnixNano()),
		Remote:    state.PeeringRemote{Partition: p.GetRemote().GetPartition(), Datacenter: p.GetRemote().GetDatacenter()},
		StreamStatus: StreamStatus{
			Connected: ss.GetConnected(), ImportedServices: ss.GetImportedServices(), ExportedServices: ss.GetExportedServices(),
			LastHeartbeat: fromUnixNano(ss.GetLastHeartbeatUnixNano()), LastReceive: fromUnixNano(ss.GetLastReceiveUnixNano()),
			LastSend: fromUnixNano(ss.GetLastSendUnixNano()), LastError: ss.GetLastError(),
			LastErrorAt:    fromUnixNano(ss.GetLastErrorUnixNano()),
			ReplicationLag: time.Duration(ss.GetReplicationLagMs()) * time.Millisecond,
			Reconnects:     int(min(ss.GetReconnects(), uint64(1<<31-1))),
			QuotaRefusals:  ss.GetQuotaRefusals(), ImportRefusals: ss.GetImportRefusals(),
			LastRefusal: ss.GetLastRefusal(), LastRefusalAt: fromUnixNano(ss.GetLastRefusalUnixNano()),
		},
		CreateIndex: p.GetCreateIndex(), ModifyIndex: p.GetModifyIndex(),
		StreamSecret: secretStatusFromProto(p.GetStreamSecret()),
	}
}

func (m managementServer) SignLeaf(ctx context.Context, req *pbpeering.SignLeafRequest) (*pbpeering.SignLeafResponse, error) {
	pub, err := x509.ParsePKIXPublicKey(req.GetPublicKey())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "sign leaf: public key: %v", err)
	}
	var id spiffeid.ID
	if req.GetSpiffeId() != "" {
		if id, err = spiffeid.FromString(req.GetSpiffeId()); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "sign leaf: SPIFFE ID %q: %v", req.GetSpiffeId(), err)
		}
	}
	lr := LeafRequest{
		PublicKey: pub, ID: id, DNSNames: req.GetDnsNames(), TTL: time.Duration(req.GetTtlSeconds()) * time.Second,
		Server: req.GetServer(), Client: req.GetClient(),
	}
	if err := m.s.authorizeLeaf(ctx, &lr); err != nil {
		return nil, toStatus(ctx, err)
	}
	leaf, err := m.s.SignLeaf(incoming(ctx), lr)
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	return &pbpeering.SignLeafResponse{ChainPem: leaf.ChainPEM, RootId: leaf.RootID}, nil
}

func (m managementServer) RotateCA(ctx context.Context, _ *pbpeering.RotateCARequest) (*pbpeering.RotateCAResponse, error) {
	id, err := m.s.RotateCA(incoming(ctx))
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	return &pbpeering.RotateCAResponse{RootId: id}, nil
}

func (m managementServer) RotateStreamSecret(ctx context.Context, req *pbpeering.RotateStreamSecretRequest) (*pbpeering.RotateStreamSecretResponse, error) {
	if err := m.s.RotateStreamSecret(incoming(ctx), req.GetPeerName()); err != nil {
		return nil, toStatus(ctx, err)
	}
	return &pbpeering.RotateStreamSecretResponse{}, nil
}
