package peering

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/internal/ca"
)

// Config configures the peering controller.
type Config struct {
	// Cluster is this node's cluster member; required. The controller runs
	// on servers; on a client it only forwards management calls.
	Cluster *catalog.Cluster
	// HeartbeatInterval is how often an open stream sends a heartbeat.
	// Zero value: 15 s (Consul's).
	HeartbeatInterval time.Duration
	// HeartbeatTimeout is how long a stream may go without hearing from the
	// peer before the peering counts as FAILING and the stream is reset.
	// Zero value: 2 minutes (Consul's).
	HeartbeatTimeout time.Duration
	// StaleStreamTimeout is how long an open stream may go without
	// receiving anything from the peer (no heartbeat, no data), or with one
	// send blocked (the peer not reading, flow control shut), before this
	// end resets it as stale: the dialer closes it and resubscribes, the
	// acceptor closes it so that the dialer reconnects. Each reset is
	// logged, counted (peerd_peering_stream_resets_total) and recorded as
	// the status' last error. Zero value: 3 × HeartbeatInterval, at most
	// HeartbeatTimeout. It must be longer than HeartbeatInterval and not
	// longer than HeartbeatTimeout.
	StaleStreamTimeout time.Duration
	// ReconnectMin and ReconnectMax bound the dialer's exponential backoff
	// (with full jitter) between stream attempts. Zero values: 250 ms, 5 s:
	// after a partition heals, the stream is back within seconds (the fault
	// suite's bound is 10 s), and full jitter spreads the redials of many
	// peerings over the 5 s instead of sending them at once.
	ReconnectMin time.Duration
	ReconnectMax time.Duration
	// MaxMessageBytes is the largest message the stream sends; larger
	// resources are split into chunks. Zero value: 4 MiB (half of the 8 MiB
	// gRPC limit, leaving room for framing).
	MaxMessageBytes int
	// Quotas bound what the peer of each peering can make this cluster
	// import and do (see Quotas); zero fields mean DefaultQuotas.
	Quotas Quotas
	// AllowLocalGateways accepts imported instances whose gateway address
	// is loopback, link-local, unspecified, multicast or one of this
	// cluster's node addresses. Off by default: a peer could otherwise
	// point this cluster's traffic at itself. Clusters peered on one host
	// (dev mode, tests) need it.
	AllowLocalGateways bool
	// PurgeBatch is how many imported nodes one raft write removes when a
	// peering is deleted. Zero value: 128.
	PurgeBatch int
	// LeafTTL is the longest lifetime of a leaf the cluster CA signs on
	// this server (the agent's -leaf-ttl); longer requests get it. Zero
	// value: 72 h.
	LeafTTL time.Duration
	// RequireNodeIdentity refuses SignLeaf calls that carry no verified
	// node identity (cluster trust on: the internal port is mTLS).
	RequireNodeIdentity bool
	// Refused, when set, is told of every refused leaf request (listener,
	// reason), for the security refusals counter.
	Refused func(listener, reason string)
	// StreamSecretRotation is how long an acceptor's active stream secret
	// lives before the leader rotates it: a new pending secret, handed to
	// the dialer over the open stream and promoted once the dialer stored
	// it; the old one then stops working. Zero value: 24 h; negative: never
	// on a schedule (RotateStreamSecret still rotates on demand).
	StreamSecretRotation time.Duration
	// SecretAttemptRate and SecretAttemptBurst bound, per peering ID, the
	// secret exchanges and the refused stream opens peers may make: a token
	// bucket of SecretAttemptBurst attempts refilled at SecretAttemptRate
	// per second. Zero values: 1 per second, 5.
	SecretAttemptRate  float64
	SecretAttemptBurst int
	// CASeed is the CA the first server of a cluster made before raft held
	// one; the leader's CA bootstrap adopts it. nil: the first leader makes
	// the CA.
	CASeed *ca.Seed
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Registry receives the peering metrics; nil registers nothing.
	Registry prometheus.Registerer
	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
}

// staleHeartbeats is how many heartbeat intervals of silence make a
// stream stale by default (see Config.StaleStreamTimeout).
const staleHeartbeats = 3

// DefaultConfig returns Consul's timings; set Cluster.
func DefaultConfig() Config {
	return Config{
		HeartbeatInterval: 15 * time.Second,
		HeartbeatTimeout:  2 * time.Minute,
		ReconnectMin:      250 * time.Millisecond,
		ReconnectMax:      5 * time.Second,
		MaxMessageBytes:   4 << 20,
		PurgeBatch:        128,
		Quotas:            DefaultQuotas(),

		StreamSecretRotation: 24 * time.Hour,
		SecretAttemptRate:    1,
		SecretAttemptBurst:   5,
	}
}

// withDefaults fills zero values from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = d.HeartbeatInterval
	}
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = d.HeartbeatTimeout
	}
	if c.StaleStreamTimeout == 0 {
		c.StaleStreamTimeout = min(staleHeartbeats*c.HeartbeatInterval, c.HeartbeatTimeout)
	}
	if c.ReconnectMin == 0 {
		c.ReconnectMin = d.ReconnectMin
	}
	if c.ReconnectMax == 0 {
		c.ReconnectMax = d.ReconnectMax
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = d.MaxMessageBytes
	}
	if c.PurgeBatch == 0 {
		c.PurgeBatch = d.PurgeBatch
	}
	c.Quotas = c.Quotas.withDefaults()
	if c.StreamSecretRotation == 0 {
		c.StreamSecretRotation = d.StreamSecretRotation
	}
	if c.SecretAttemptRate == 0 {
		c.SecretAttemptRate = d.SecretAttemptRate
	}
	if c.SecretAttemptBurst == 0 {
		c.SecretAttemptBurst = d.SecretAttemptBurst
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports every problem with c.
func (c Config) Validate() error {
	var errs []error
	if c.Cluster == nil {
		errs = append(errs, errors.New("peering: a cluster member is required"))
	}
	if c.HeartbeatInterval < 0 || c.HeartbeatTimeout < 0 {
		errs = append(errs, errors.New("peering: heartbeat interval and timeout must not be negative"))
	}
	if c.HeartbeatTimeout != 0 && c.HeartbeatInterval != 0 && c.HeartbeatTimeout <= c.HeartbeatInterval {
		errs = append(errs, fmt.Errorf("peering: heartbeat timeout %s must be longer than the interval %s", c.HeartbeatTimeout, c.HeartbeatInterval))
	}
	if c.StaleStreamTimeout < 0 {
		errs = append(errs, fmt.Errorf("peering: stale stream timeout %s is negative", c.StaleStreamTimeout))
	}
	if c.StaleStreamTimeout > 0 {
		interval, timeout := c.HeartbeatInterval, c.HeartbeatTimeout
		if interval == 0 {
			interval = DefaultConfig().HeartbeatInterval
		}
		if timeout == 0 {
			timeout = DefaultConfig().HeartbeatTimeout
		}
		if c.StaleStreamTimeout <= interval || c.StaleStreamTimeout > timeout {
			errs = append(errs, fmt.Errorf("peering: stale stream timeout %s must be longer than the heartbeat interval %s and at most the heartbeat timeout %s (leave it zero for 3 intervals)", c.StaleStreamTimeout, interval, timeout))
		}
	}
	if c.MaxMessageBytes < 0 || (c.MaxMessageBytes > 0 && c.MaxMessageBytes < 1024) {
		errs = append(errs, fmt.Errorf("peering: max message size %d bytes is too small (at least 1024)", c.MaxMessageBytes))
	}
	if c.LeafTTL < 0 {
		errs = append(errs, fmt.Errorf("peering: leaf TTL %s is negative", c.LeafTTL))
	}
	if c.ReconnectMax != 0 && c.ReconnectMin > c.ReconnectMax {
		errs = append(errs, fmt.Errorf("peering: reconnect minimum %s exceeds maximum %s", c.ReconnectMin, c.ReconnectMax))
	}
	if err := c.Quotas.validate(); err != nil {
		errs = append(errs, err)
	}
	if c.SecretAttemptRate < 0 || c.SecretAttemptBurst < 0 {
		errs = append(errs, fmt.Errorf("peering: secret attempt rate %v and burst %d must not be negative", c.SecretAttemptRate, c.SecretAttemptBurst))
	}
	return errors.Join(errs...)
}

func (c *Config) refused(listener, reason string) {
	if c.Refused != nil {
		c.Refused(listener, reason)
	}
}
