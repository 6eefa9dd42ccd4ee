package peering

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/peering/pbpeerstream"
)

// stallProxy forwards TCP connections to target. freeze makes the open
// connections stop forwarding one direction while both stay open: the
// peer's sender looks stuck, the transport alive. Connections opened after
// a freeze forward normally.
type stallProxy struct {
	ln     net.Listener
	target string

	done  chan struct{} // closed at the end of the test
	mu    sync.Mutex
	pairs []*proxyPair // the open, unfrozen connections
	all   []*proxyPair
	wg    sync.WaitGroup
}

// proxyPair is one proxied connection; toTarget and fromTarget are closed
// to freeze that direction.
type proxyPair struct {
	client, server       net.Conn
	toTarget, fromTarget chan struct{}
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, target: target, done: make(chan struct{})}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		_ = ln.Close()
		close(p.done)
		p.mu.Lock()
		for _, pr := range p.all {
			_ = pr.client.Close()
			_ = pr.server.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *stallProxy) addr() string { return p.ln.Addr().String() }

func (p *stallProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		pr := &proxyPair{client: c, server: s, toTarget: make(chan struct{}), fromTarget: make(chan struct{})}
		p.mu.Lock()
		p.pairs = append(p.pairs, pr)
		p.all = append(p.all, pr)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(s, c, pr.toTarget)
		go p.pipe(c, s, pr.fromTarget)
	}
}

// pipe copies src to dst until either closes; once frozen is closed it
// holds what it read and forwards nothing more, keeping both open.
func (p *stallProxy) pipe(dst, src net.Conn, frozen chan struct{}) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-frozen:
			// Stuck: read and forward nothing more, keep both open.
			<-p.done
			return
		default:
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			_ = dst.Close()
			return
		}
	}
}

// freeze stops, on every open connection, the direction named: toTarget
// (the dialer's sends to the acceptor) or not (the acceptor's sends). It
// returns how many connections it froze.
func (p *stallProxy) freeze(toTarget bool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pr := range p.pairs {
		if toTarget {
			close(pr.toTarget)
		} else {
			close(pr.fromTarget)
		}
	}
	n := len(p.pairs)
	p.pairs = nil // new connections forward; the frozen ones stay open
	return n
}

func (p *stallProxy) conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pairs)
}

func TestStaleStreamIsResetAndHeals(t *testing.T) {
	tests := []struct {
		name string
		// stuckAcceptor freezes the acceptor's sends (the dialer must
		// notice and resubscribe); else the dialer's (the acceptor must
		// notice and close).
		stuckAcceptor bool
	}{
		{"acceptor's sender stops, the dialer resubscribes", true},
		{"dialer's sender stops, the acceptor closes", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := twoClusters(t, nil, nil)
			bound := a.peering.cfg.StaleStreamTimeout
			if want := 3 * a.peering.cfg.HeartbeatInterval; bound != want {
				t.Fatalf("default stale bound: got %s, want %s", bound, want)
			}
			register(t, a, "n1", "10.1.0.1", "web", "web-1", 80, state.HealthPassing)
			register(t, a, "n2", "10.1.0.2", "db", "db-1", 5432, state.HealthPassing)
			register(t, a, "n4", "10.1.0.4", "cache", "cache-1", 6379, state.HealthPassing)
			export(t, a, map[string][]string{"web": {"b"}, "db": {"b"}, "cache": {"b"}})
			p := establish(t, a, b)
			waitActive(t, p)
			waitSettled(t, p)

			// Route the dialer through the proxy.
			px := newStallProxy(t, a.tlsAddr)
			_, row, _ := b.cluster.Store().Peering(nil, "a")
			cp := *row
			cp.ManualServerAddresses = []string{px.addr()}
			apply(t, b, &catalog.Command{Type: catalog.CmdPeeringWrite, Peering: &state.PeeringWriteRequest{Peering: &cp}})
			waitFor(t, 10*time.Second, "a stream through the proxy", func() bool {
				return px.conns() > 0 && userState(b, "a") == state.PeeringActive && userState(a, "b") == state.PeeringActive &&
					len(imported(t, b, "a", "web")) == 1 && len(imported(t, b, "a", "db")) == 1 && len(imported(t, b, "a", "cache")) == 1
			})
			// Let the stream through the proxy carry a heartbeat both ways.
			time.Sleep(2 * a.peering.cfg.HeartbeatInterval)

			detector, detectorID := b, p.dialID
			if !tt.stuckAcceptor {
				detector, detectorID = a, p.accID
			}
			detName := map[bool]string{true: "a", false: "b"}[tt.stuckAcceptor]
			// The dialer's importer holds cache in the form last sent: the
			// resubscription declares it and the resync leaves it out.
			if _, ok := b.peering.held.get(p.dialID)["cache"]; !ok {
				t.Fatalf("the dialer holds no digest of cache: %v", b.peering.held.get(p.dialID))
			}
			resetsBefore := counterValue(t, detector.peering.metrics.resets.WithLabelValues(detName, "stale"))
			reconnectsBefore := b.peering.tracker.get(p.dialID).Reconnects

			frozenAt := time.Now()
			if n := px.freeze(!tt.stuckAcceptor); n == 0 {
				t.Fatal("no connection to freeze")
			}
			// Meanwhile the exporter changes: db goes, web turns warning,
			// a new instance appears.
			deregister(t, a, "n2", "db-1")
			setHealth(t, a, "n1", "web-1", state.HealthWarning)
			register(t, a, "n3", "10.1.0.3", "web", "web-2", 80, state.HealthPassing)

			var detectedAt time.Time
			waitFor(t, bound+5*time.Second, "the stale stream to be reset", func() bool {
				if strings.Contains(detector.peering.tracker.get(detectorID).LastError, "stale stream") {
					detectedAt = time.Now()
					return true
				}
				return false
			})
			// Silence counts from the last message, up to one heartbeat
			// interval before the freeze; the loop checks every
			// min(interval, bound/4). Allow that and some scheduling on a
			// shared machine.
			lo, hi := bound-a.peering.cfg.HeartbeatInterval, bound+bound/4+time.Second
			if took := detectedAt.Sub(frozenAt); took < lo || took > hi {
				t.Errorf("stale stream reset %s after the freeze; want within [%s, %s]", took, lo, hi)
			}
			t.Logf("reset %s after the freeze (bound %s)", detectedAt.Sub(frozenAt).Round(time.Millisecond), bound)
			if got := counterValue(t, detector.peering.metrics.resets.WithLabelValues(detName, "stale")); got != resetsBefore+1 {
				t.Errorf("stale resets at the detecting end: got %v, want %v", got, resetsBefore+1)
			}

			waitFor(t, 10*time.Second, "ACTIVE again with the exporter's view", func() bool {
				web := imported(t, b, "a", "web")
				return b.peering.tracker.get(p.dialID).Reconnects > reconnectsBefore &&
					userState(b, "a") == state.PeeringActive && userState(a, "b") == state.PeeringActive &&
					len(imported(t, b, "a", "db")) == 0 && len(web) == 2 &&
					importedHealth(t, b, "a", "web", "n1/web-1") == state.HealthWarning &&
					importedHealth(t, b, "a", "web", "n3/web-2") == state.HealthPassing
			})
			// cache, unchanged and left out of the resync, was kept.
			t.Logf("ACTIVE with the exporter's view %s after the freeze", time.Since(frozenAt).Round(time.Millisecond))
			if n, _ := b.cluster.Store().ImportedNodes("a", 0); !slices.Equal(n, []string{"n1", "n3", "n4"}) {
				t.Fatalf("imported nodes after healing: got %v, want [n1 n3 n4]", n)
			}
		})
	}
}

func TestStaleStreamTimeoutValidation(t *testing.T) {
	tests := []struct {
		name                     string
		interval, timeout, stale time.Duration
		wantErr                  bool
	}{
		{"zero derives it", 0, 0, 0, false},
		{"between interval and timeout", time.Second, 10 * time.Second, 3 * time.Second, false},
		{"equal to the timeout", time.Second, 10 * time.Second, 10 * time.Second, false},
		{"not longer than the interval", time.Second, 10 * time.Second, time.Second, true},
		{"longer than the timeout", time.Second, 10 * time.Second, 11 * time.Second, true},
		{"negative", 0, 0, -time.Second, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{Cluster: &catalog.Cluster{}, HeartbeatInterval: tt.interval, HeartbeatTimeout: tt.timeout, StaleStreamTimeout: tt.stale}
			err := c.Validate()
			if (err != nil) != tt.wantErr {
				t.Fatalf("got %v, want error %v", err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "stale stream timeout") {
				t.Fatalf("error %q does not name the setting", err)
			}
		})
	}
	d := DefaultConfig()
	d.Cluster = &catalog.Cluster{}
	if got, want := d.withDefaults().StaleStreamTimeout, 45*time.Second; got != want {
		t.Fatalf("default: got %s, want %s (3 heartbeat intervals)", got, want)
	}
	short := Config{HeartbeatInterval: time.Minute, HeartbeatTimeout: 2 * time.Minute}.withDefaults()
	if got := short.StaleStreamTimeout; got != 2*time.Minute {
		t.Fatalf("3 intervals past the heartbeat timeout: got %s, want the timeout 2m", got)
	}
}

func TestBackoffJitterFromTheFirstRetry(t *testing.T) {
	s := &Server{cfg: Config{ReconnectMin: 250 * time.Millisecond, ReconnectMax: 4 * time.Second}}
	// A whole cluster's peerings retrying at once after a partition: their
	// first waits are spread over (0, ReconnectMin].
	const peerings = 64
	for attempt, bound := range []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		waits := make([]time.Duration, peerings)
		for i := range waits {
			waits[i] = s.backoff(attempt)
			if waits[i] <= 0 || waits[i] > bound {
				t.Fatalf("attempt %d: wait %s outside the documented window (0, %s]", attempt, waits[i], bound)
			}
		}
		lo, hi := slices.Min(waits), slices.Max(waits)
		if lo == hi {
			t.Fatalf("attempt %d: all %d peerings wait %s: no jitter", attempt, peerings, lo)
		}
		// 64 uniform draws leave a gap of half the window with
		// probability about 64/2^63.
		if hi-lo < bound/2 {
			t.Fatalf("attempt %d: waits span only [%s, %s] of (0, %s]", attempt, lo, hi, bound)
		}
	}
}

// TestResubscribeLeavesOutWhatTheImporterHolds: a subscription declaring
// the digest of a service's full form gets no copy of it, a wrong digest
// gets the service, and a declared service no longer exported is deleted.
func TestResubscribeLeavesOutWhatTheImporterHolds(t *testing.T) {
	// The raw peer sends no heartbeats: give it the whole timeout.
	a := newTestCluster(t, "a", "dc1", func(c *Config) { c.StaleStreamTimeout = c.HeartbeatTimeout })
	register(t, a, "n1", "10.1.0.1", "web", "web-1", 80, state.HealthPassing)
	register(t, a, "n2", "10.1.0.2", "db", "db-1", 5432, state.HealthPassing)
	export(t, a, map[string][]string{"web": {"b"}, "db": {"b"}})
	rp, _ := openRaw(t, a)
	rp.subscribe(pbpeerstream.TypeURLExportedService)
	rp.next("db", isServiceResponse("db")) // in name order
	web := rp.next("web", isServiceResponse("web")).GetResponse()
	if web.GetChunkCount() != 0 {
		t.Fatal("web came in chunks: the test needs it whole")
	}

	rp.send(&pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_Request{Request: &pbpeerstream.Request{
		ResourceUrl:     pbpeerstream.TypeURLExportedService,
		InitialVersions: map[string]uint64{"web": payloadDigest(web.GetResource()), "db": 12345, "gone": 1},
	}}})
	var got []string
	for {
		r := rp.next("the resync", func(m *pbpeerstream.ReplicationMessage) bool {
			return m.GetResponse().GetResourceUrl() == pbpeerstream.TypeURLExportedService
		}).GetResponse()
		got = append(got, r.GetOperation().String()+" "+r.GetResourceId())
		if r.GetSyncEnd() {
			break
		}
	}
	want := []string{"OPERATION_UPSERT db", "OPERATION_DELETE gone"}
	if !slices.Equal(got, want) {
		t.Fatalf("resync: got %v, want %v (web held, not resent)", got, want)
	}
}

func TestHeldDigestsFollowTheImports(t *testing.T) {
	h := newHeldDigests()
	h.set("p", "web", 1)
	h.set("p", "db", 2)
	h.set("q", "api", 3)
	h.keepOnly("p", map[string]bool{"web": true})
	if got := h.get("p"); len(got) != 1 || got["web"] != 1 {
		t.Fatalf("after keepOnly: got %v, want map[web:1]", got)
	}
	h.drop("p", "web")
	if got := h.get("p"); got != nil {
		t.Fatalf("after drop: got %v, want nil", got)
	}
	h.forget("q")
	if got := h.get("q"); got != nil {
		t.Fatalf("after forget: got %v, want nil", got)
	}
	if payloadDigest(nil) == 0 || payloadDigest([]byte("a")) == payloadDigest([]byte("b")) {
		t.Fatal("digest is 0 or collides on distinct payloads")
	}
}

// stuckSendStream is a peer that keeps sending heartbeats but never reads:
// every Send blocks until the test ends.
type stuckSendStream struct {
	every time.Duration
	done  chan struct{}
}

func (s *stuckSendStream) Send(*pbpeerstream.ReplicationMessage) error {
	<-s.done
	return errors.New("test over")
}

func (s *stuckSendStream) Recv() (*pbpeerstream.ReplicationMessage, error) {
	select {
	case <-time.After(s.every):
		return &pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_Heartbeat{Heartbeat: &pbpeerstream.Heartbeat{}}}, nil
	case <-s.done:
		return nil, io.EOF
	}
}

// TestBlockedSendResetsTheStream: a peer whose heartbeats arrive but that
// reads nothing is reset once a send has been blocked for the bound, and
// the acceptor's session ends although its Send is still blocked.
func TestBlockedSendResetsTheStream(t *testing.T) {
	a := newTestCluster(t, "a", "dc1", nil)
	id, _ := acceptorPeering(t, a, "b")
	_, p, err := a.cluster.Store().PeeringByID(nil, id)
	if err != nil || p == nil {
		t.Fatalf("peering row: %v, %v", p, err)
	}
	st := &stuckSendStream{every: a.peering.cfg.HeartbeatInterval / 4, done: make(chan struct{})}
	defer close(st.done)
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	ss := a.peering.newSession(ctx, cancel, st, p, false)
	bound := a.peering.cfg.StaleStreamTimeout
	began := time.Now()
	ended := make(chan error, 1)
	go func() { ended <- ss.run(nil) }()
	select {
	case err = <-ended:
	case <-time.After(bound + 5*time.Second):
		t.Fatalf("the session did not end %s after its first send blocked (bound %s)", time.Since(began), bound)
	}
	if took := time.Since(began); took < bound {
		t.Errorf("reset after %s, before the %s bound", took, bound)
	}
	if !errors.Is(err, errStale) || !strings.Contains(err.Error(), "send to the peer has been blocked") {
		t.Fatalf("session ended with %v, want a stale stream error naming the blocked send", err)
	}
	if got := counterValue(t, a.peering.metrics.resets.WithLabelValues("b", "send_stalled")); got != 1 {
		t.Fatalf("send_stalled resets: got %v, want 1", got)
	}
	if got := counterValue(t, a.peering.metrics.resets.WithLabelValues("b", "stale")); got != 0 {
		t.Fatalf("stale resets: got %v, want 0 (heartbeats kept arriving)", got)
	}
	if got := a.peering.tracker.get(id).LastError; !strings.Contains(got, "blocked") {
		t.Fatalf("status last error: got %q, want the blocked send", got)
	}
}
