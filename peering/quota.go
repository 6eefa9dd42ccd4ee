package peering

import (
	"errors"
	"fmt"
	"time"
)

// Quotas bound what one peer can make this cluster hold and do: a peer is
// trusted only for its own imports, and only this far. Each field's zero
// value means its default (DefaultQuotas); negative values are invalid. A
// message that would pass a quota is NACKed whole (ResourceExhausted, the
// quota named in the message), counted in
// peerd_peering_quota_refusals_total{peer,quota} and in the peering's
// status, and logged; nothing of it is applied.
type Quotas struct {
	// MaxImportedServices is how many services may be imported from the
	// peer (services with at least one instance, and the length of the
	// exported-services list). Default 10,000.
	MaxImportedServices int
	// MaxImportedInstances is how many service instances may be imported
	// from the peer, over all its services. Default 250,000.
	MaxImportedInstances int
	// MaxInFlightBytes bounds the memory held for the peer's unfinished
	// chunked resources (the data received so far plus a fixed cost per
	// resource). It also bounds one resource's size. Default 64 MiB.
	MaxInFlightBytes int
	// MaxMessagesPerSecond and MessageBurst are a token bucket over the
	// responses (resources) the peer sends: MessageBurst at once, refilled
	// at MaxMessagesPerSecond. Heartbeats, ACKs and NACKs are not counted.
	// Defaults 5,000 per second and a burst of 20,000 (a full sync of
	// 10,000 services passes in one burst).
	MaxMessagesPerSecond int
	MessageBurst         int
}

// DefaultQuotas allows 100,000 instances per peer with room to spare.
func DefaultQuotas() Quotas {
	return Quotas{
		MaxImportedServices:  10_000,
		MaxImportedInstances: 250_000,
		MaxInFlightBytes:     64 << 20,
		MaxMessagesPerSecond: 5_000,
		MessageBurst:         20_000,
	}
}

// withDefaults fills zero fields from DefaultQuotas.
func (q Quotas) withDefaults() Quotas {
	d := DefaultQuotas()
	for _, f := range []struct{ v, d *int }{
		{&q.MaxImportedServices, &d.MaxImportedServices},
		{&q.MaxImportedInstances, &d.MaxImportedInstances},
		{&q.MaxInFlightBytes, &d.MaxInFlightBytes},
		{&q.MaxMessagesPerSecond, &d.MaxMessagesPerSecond},
		{&q.MessageBurst, &d.MessageBurst},
	} {
		if *f.v == 0 {
			*f.v = *f.d
		}
	}
	return q
}

// validate reports negative quotas.
func (q Quotas) validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		v    int
	}{
		{"max imported services", q.MaxImportedServices},
		{"max imported instances", q.MaxImportedInstances},
		{"max in-flight bytes", q.MaxInFlightBytes},
		{"max messages per second", q.MaxMessagesPerSecond},
		{"message burst", q.MessageBurst},
	} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("peering: %s %d is negative", f.name, f.v))
		}
	}
	return errors.Join(errs...)
}

// The quotas as the metric and the status name them.
const (
	quotaServices    = "services"
	quotaInstances   = "instances"
	quotaInFlight    = "in_flight_bytes"
	quotaMessageRate = "messages_per_second"
	chunkOverhead    = 512 // bytes a buffered chunked resource costs beside its data
)

// importRefusal is why an import was refused: a quota reached (quota set)
// or an invalid resource (reason set: trust_domain, sni, gateway_address,
// spiffe_id, meta, ...). Its text is the NACK's message.
type importRefusal struct {
	quota  string
	reason string
	msg    string
}

func (e *importRefusal) Error() string { return e.msg }

func quotaErr(quota, format string, args ...any) error {
	return &importRefusal{quota: quota, msg: "quota " + quota + ": " + fmt.Sprintf(format, args...)}
}

func invalidErr(reason, format string, args ...any) error {
	return &importRefusal{reason: reason, msg: fmt.Sprintf(format, args...)}
}

// tokenBucket is the message rate limit of one stream; used by the
// receive loop only.
type tokenBucket struct {
	rate, burst, tokens float64
	last                time.Time
}

func newTokenBucket(rate, burst int, now time.Time) *tokenBucket {
	return &tokenBucket{rate: float64(rate), burst: float64(burst), tokens: float64(burst), last: now}
}

// allow takes a token if there is one.
func (b *tokenBucket) allow(now time.Time) bool {
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(b.burst, b.tokens+d.Seconds()*b.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// importCounts is what is imported from the peer: instances by service,
// and the totals the quotas compare against.
type importCounts struct {
	bySvc     map[string]int
	services  int // with at least one instance
	instances int
}

// countDelta is the counts a plan (or a batch of plans) would leave,
// checked against the quotas before the write and merged after it.
type countDelta struct {
	bySvc     map[string]int
	services  int
	instances int
}

func newCountDelta() *countDelta { return &countDelta{bySvc: map[string]int{}} }

// loadCounts reads the imports once per stream; the stream is the only
// writer of its peer's imports while it runs.
func (im *importer) loadCounts() error {
	if im.counts != nil {
		return nil
	}
	by, err := im.sess.srv.cfg.Cluster.Store().ImportedInstanceCounts(im.sess.name)
	if err != nil {
		return err
	}
	c := &importCounts{bySvc: by}
	for _, n := range by {
		c.instances += n
		if n > 0 {
			c.services++
		}
	}
	im.counts = c
	return nil
}

// admit checks that the imports of service name may become after
// instances, given the changes d holds already, and adds the change to d.
// Shrinking is always admitted; a refusal leaves d as it was.
func (im *importer) admit(d *countDelta, name string, after int) error {
	q := im.sess.srv.cfg.Quotas
	before, ok := d.bySvc[name]
	if !ok {
		before = im.counts.bySvc[name]
	}
	if after > before {
		if n := im.counts.instances + d.instances + after - before; n > q.MaxImportedInstances {
			return quotaErr(quotaInstances, "importing %d instances of %s would make %d instances imported from this peer, above the limit of %d",
				after, shortID(name), n, q.MaxImportedInstances)
		}
		if before == 0 && im.counts.services+d.services+1 > q.MaxImportedServices {
			return quotaErr(quotaServices, "importing %s would make %d services imported from this peer, above the limit of %d",
				shortID(name), im.counts.services+d.services+1, q.MaxImportedServices)
		}
	}
	d.bySvc[name] = after
	d.instances += after - before
	switch {
	case before == 0 && after > 0:
		d.services++
	case before > 0 && after == 0:
		d.services--
	}
	return nil
}

// settle merges a committed delta into the counts.
func (im *importer) settle(d *countDelta) {
	for n, v := range d.bySvc {
		if v == 0 {
			delete(im.counts.bySvc, n)
		} else {
			im.counts.bySvc[n] = v
		}
	}
	im.counts.services += d.services
	im.counts.instances += d.instances
}

// admitPlan admits every service count of plan into a new delta.
func (im *importer) admitPlan(plan *importPlan) (*countDelta, error) {
	if err := im.loadCounts(); err != nil {
		return nil, err
	}
	d := newCountDelta()
	for n, v := range plan.counts {
		if err := im.admit(d, n, v); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// checkListQuota refuses an exported-services list longer than the
// services quota.
func (im *importer) checkListQuota(names []string) error {
	if max := im.sess.srv.cfg.Quotas.MaxImportedServices; len(names) > max {
		return quotaErr(quotaServices, "the exported-services list names %d services, above the limit of %d", len(names), max)
	}
	return nil
}

// bufferChunk appends a chunk to buf within the in-flight budget, growing
// the buffer itself so the budget counts the memory actually held.
func (im *importer) bufferChunk(buf *chunkBuf, data []byte) error {
	need := len(buf.buf) + len(data)
	if need > cap(buf.buf) {
		grown := max(need, 2*cap(buf.buf))
		if im.inFlight-cap(buf.buf)+grown > im.maxInFlight {
			grown = need
		}
		if im.inFlight-cap(buf.buf)+grown > im.maxInFlight {
			return quotaErr(quotaInFlight, "unfinished chunked resources from this peer would hold %d bytes, above the limit of %d",
				im.inFlight-cap(buf.buf)+grown, im.maxInFlight)
		}
		nb := make([]byte, len(buf.buf), grown)
		copy(nb, buf.buf)
		im.inFlight += grown - cap(buf.buf)
		buf.buf = nb
	}
	buf.buf = append(buf.buf, data...)
	return nil
}

// dropChunks forgets the buffered chunks of key and their budget.
func (im *importer) dropChunks(key string) {
	if buf := im.chunks[key]; buf != nil {
		im.inFlight -= chunkOverhead + len(key) + cap(buf.buf)
		delete(im.chunks, key)
	}
}

// refused records a refused message in the peering's status: the count by
// quota (quota set) or by reason, and the message.
func (t *tracker) refused(id, quota, reason, msg string) {
	now := t.now()
	t.update(id, func(s *Status) {
		if quota != "" {
			if s.QuotaRefusals == nil {
				s.QuotaRefusals = map[string]uint64{}
			}
			s.QuotaRefusals[quota]++
		} else {
			if s.ImportRefusals == nil {
				s.ImportRefusals = map[string]uint64{}
			}
			s.ImportRefusals[reason]++
		}
		s.LastRefusal, s.LastRefusalAt = msg, now
	})
}
