package state

// Conventions of the catalog shared by the peering exporter and importer,
// the terminator, the DNS server and the dataplane wiring: where a node
// advertises its gateway, and what an imported instance carries.
const (
	// GatewayPortMeta is the node meta key under which a node advertises its
	// gateway port (the inbound mTLS listener peers and other nodes
	// connect to).
	GatewayPortMeta = "peerd-gateway-port"
	// Service meta keys an imported instance carries: the peered SNI to dial,
	// the SPIFFE IDs to accept (comma separated) and the protocol, as the
	// exporter computed them.
	MetaPeerSNI       = "peerd-peer-sni"
	MetaPeerSPIFFEIDs = "peerd-peer-spiffe-ids"
	MetaPeerProtocol  = "peerd-peer-protocol"
	// TaggedAddressGateway is the tagged address of an imported instance
	// holding the exporter's gateway address and port.
	TaggedAddressGateway = "peerd-gateway"
	// ReservedMetaPrefix starts every service meta key peerd gives a meaning
	// to locally: the terminator's cgroup claim (l7proxy.CgroupMeta,
	// "peerd-cgroup"), the gateway port, and the imported-instance keys
	// above. The peering importer strips keys with this prefix from what a
	// peer sends, so a peer cannot claim a local meaning.
	ReservedMetaPrefix = "peerd-"
)
