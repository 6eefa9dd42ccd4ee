package pbpeerstream

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
)

// Resource type URLs: the Response.resource_url and Request.resource_url
// values, one per payload message. They play the role of Consul's
// "type.googleapis.com/hashicorp.consul.internal.peering.ExportedServiceList",
// "...peering.PeeringTrustBundle", "...peering.ServerAddresses" and
// "...peerstream.ExportedService", but name peerd's own messages, so each is
// also the Any type URL of its payload. No other URL is accepted.
const (
	TypeURLExportedServiceList = "type.googleapis.com/peerd.peerstream.v1.ExportedServiceList"
	TypeURLExportedService     = "type.googleapis.com/peerd.peerstream.v1.ExportedService"
	TypeURLTrustBundle         = "type.googleapis.com/peerd.peerstream.v1.TrustBundle"
	TypeURLServerAddresses     = "type.googleapis.com/peerd.peerstream.v1.ServerAddresses"
)

// Resource IDs of the singleton resources (Consul's). An ExportedService's
// resource ID is the service name.
const (
	ResourceIDExportedServiceList = "exported-service-list"
	ResourceIDTrustBundle         = "roots"
	ResourceIDServerAddresses     = "server-addrs"
)

// typeURLs maps each known type URL to an empty payload of its type.
var typeURLs = map[string]func() proto.Message{
	TypeURLExportedServiceList: func() proto.Message { return new(ExportedServiceList) },
	TypeURLExportedService:     func() proto.Message { return new(ExportedService) },
	TypeURLTrustBundle:         func() proto.Message { return new(TrustBundle) },
	TypeURLServerAddresses:     func() proto.Message { return new(ServerAddresses) },
}

// KnownTypeURL reports whether url is one of the TypeURL constants.
func KnownTypeURL(url string) bool {
	_, ok := typeURLs[url]
	return ok
}

// NewResource returns an empty payload message of the type url names, ready
// for proto.Unmarshal of Response.resource; false if the URL is unknown.
func NewResource(url string) (proto.Message, bool) {
	f, ok := typeURLs[url]
	if !ok {
		return nil, false
	}
	return f(), true
}

// InstanceID is the ID under which an ExportedService's instances are
// upserted and listed in removed_instance_ids: node name and service ID
// joined by "/" (node names cannot contain "/").
func (x *ServiceInstance) InstanceID() string {
	return x.GetNodeName() + "/" + x.GetServiceId()
}

// Validate checks the structural invariants of a message, independent of
// any stream state: exactly one payload; Open names the peering and the
// secret; Request and Response name a known resource type; a NACK quotes
// the nonce it refuses; a Response has a nonce, a consistent operation,
// version and chunk position. The error says what is wrong; a receiver NACKs
// a Response that fails it with InvalidArgument.
func (m *ReplicationMessage) Validate() error {
	if m == nil {
		return errors.New("replication message: nil")
	}
	switch p := m.GetPayload().(type) {
	case nil:
		return errors.New("replication message: no payload set (want one of open, request, response, terminated, heartbeat, secret_rotation)")
	case *ReplicationMessage_Open:
		return p.Open.validate()
	case *ReplicationMessage_Request:
		return p.Request.validate()
	case *ReplicationMessage_Response:
		return p.Response.validate()
	case *ReplicationMessage_Terminated:
		if p.Terminated == nil {
			return errors.New("replication message: terminated is set but nil")
		}
	case *ReplicationMessage_Heartbeat:
		if p.Heartbeat == nil {
			return errors.New("replication message: heartbeat is set but nil")
		}
	case *ReplicationMessage_SecretRotation:
		if p.SecretRotation.GetStreamSecret() == "" {
			return errors.New("replication message: secret_rotation without a stream secret")
		}
	default:
		return fmt.Errorf("replication message: unknown payload %T", p)
	}
	return nil
}

func (o *Open) validate() error {
	switch {
	case o == nil:
		return errors.New("open: set but nil")
	case o.GetPeerId() == "":
		return errors.New("open: peer_id is empty: want the acceptor's UUID for the peering")
	case o.GetStreamSecretId() == "":
		return errors.New("open: stream_secret_id is empty: establish the peering first")
	}
	return nil
}

func (r *Request) validate() error {
	if r == nil {
		return errors.New("request: set but nil")
	}
	if err := checkTypeURL("request", r.GetResourceUrl()); err != nil {
		return err
	}
	if r.GetResponseNonce() == "" {
		if r.Error != nil {
			return fmt.Errorf("request for %s: a NACK (error set) needs the response_nonce it refuses", r.GetResourceUrl())
		}
		// A subscription: initial_versions, if any, must be usable.
		for _, id := range slices.Sorted(maps.Keys(r.GetInitialVersions())) {
			if id == "" {
				return fmt.Errorf("request for %s: initial_versions has an empty resource ID", r.GetResourceUrl())
			}
			if r.GetInitialVersions()[id] == 0 {
				return fmt.Errorf("request for %s: initial_versions[%s] is 0: leave out resources not held", r.GetResourceUrl(), short(id))
			}
		}
		return nil
	}
	if len(r.GetInitialVersions()) > 0 {
		return fmt.Errorf("request for %s: initial_versions is only allowed in a subscription (no response_nonce)", r.GetResourceUrl())
	}
	if r.Error != nil && r.Error.GetCode() == 0 {
		return fmt.Errorf("request for %s: NACK of nonce %s has code 0 (OK): send an ACK without error instead", r.GetResourceUrl(), short(r.GetResponseNonce()))
	}
	return nil
}

func (r *Response) validate() error {
	if r == nil {
		return errors.New("response: set but nil")
	}
	if err := checkTypeURL("response", r.GetResourceUrl()); err != nil {
		return err
	}
	where := "response for " + short(r.GetResourceUrl())
	if r.GetNonce() == "" {
		return errors.New(where + ": nonce is empty")
	}
	where += " (nonce " + short(r.GetNonce()) + ")"
	if r.GetSyncEnd() && !r.GetFullSync() {
		return errors.New(where + ": sync_end is set without full_sync")
	}
	if r.GetResourceId() == "" {
		// Only a sync_end marker carries no resource.
		if !r.GetSyncEnd() {
			return errors.New(where + ": resource_id is empty (allowed only in a sync_end marker)")
		}
		if r.GetOperation() != Operation_OPERATION_UNSPECIFIED || r.GetVersion() != 0 || len(r.GetResource()) > 0 || r.GetChunkCount() != 0 || r.GetChunkIndex() != 0 {
			return errors.New(where + ": a sync_end marker without resource_id must carry no operation, version, resource or chunk")
		}
		return nil
	}
	where += ", resource " + short(r.GetResourceId())
	if r.GetVersion() == 0 {
		return errors.New(where + ": version is 0 (versions start at 1)")
	}
	if r.GetChunkCount() == 0 {
		if r.GetChunkIndex() != 0 {
			return fmt.Errorf("%s: chunk_index %d without chunk_count", where, r.GetChunkIndex())
		}
	} else {
		if r.GetChunkIndex() >= r.GetChunkCount() {
			return fmt.Errorf("%s: chunk_index %d is not below chunk_count %d", where, r.GetChunkIndex(), r.GetChunkCount())
		}
		if r.GetSyncEnd() && r.GetChunkIndex() != r.GetChunkCount()-1 {
			return fmt.Errorf("%s: sync_end on chunk %d of %d (only the last chunk may end the sync)", where, r.GetChunkIndex(), r.GetChunkCount())
		}
	}
	switch r.GetOperation() {
	case Operation_OPERATION_UPSERT:
	case Operation_OPERATION_DELETE:
		if len(r.GetResource()) > 0 {
			return errors.New(where + ": DELETE carries a resource (want none)")
		}
		if r.GetChunkCount() != 0 {
			return errors.New(where + ": DELETE is chunked (want a single message)")
		}
	case Operation_OPERATION_UNSPECIFIED:
		return errors.New(where + ": operation is unspecified (want UPSERT or DELETE)")
	default:
		return fmt.Errorf("%s: unknown operation %d", where, r.GetOperation())
	}
	return nil
}

func checkTypeURL(what, url string) error {
	switch {
	case url == "":
		return fmt.Errorf("%s: resource_url is empty", what)
	case !KnownTypeURL(url):
		if strings.HasPrefix(url, "type.googleapis.com/hashicorp.consul.") {
			return fmt.Errorf("%s: resource_url %s is Consul's: the peer is not peerd", what, short(url))
		}
		return fmt.Errorf("%s: unknown resource_url %s", what, short(url))
	}
	return nil
}

// short quotes s for an error message, truncated: it comes from the peer.
func short(s string) string {
	const limit = 100
	if len(s) > limit {
		return strconv.Quote(s[:limit]) + "..."
	}
	return strconv.Quote(s)
}
