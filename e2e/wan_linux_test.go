//go:build linux

package e2e

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// impairment is what the WAN does to packets now. The zero value forwards
// every packet at once.
type impairment struct {
	cut   bool          // drop everything (a partition)
	loss  float64       // probability of dropping a packet, 0..1
	delay time.Duration // added to every packet, each way
}

func (i impairment) String() string {
	switch {
	case i.cut:
		return "cut"
	case i.loss == 0 && i.delay == 0:
		return "clear"
	}
	return fmt.Sprintf("%.0f%% loss, %v delay", i.loss*100, i.delay)
}

// wan joins two LANs' routers with a link the suite controls: a TUN
// device in each router's namespace, and the suite copying IP packets
// between them, dropping and delaying as the impairment says. It is tc
// netem done in the test: this host's kernel is built without sch_netem
// (CONFIG_NET_SCH_NETEM is not set) and without sch_fq, so neither netem
// nor an eBPF delay (EDT needs fq) is available; the TUN pair works on
// every kernel and its loss is seeded, so a run is repeatable. Cutting
// the WAN drops every packet, which is what a dead link between
// datacenters does to TCP (no RST, no ICMP): the peers' timeouts decide.
type wan struct {
	now     atomic.Pointer[impairment]
	tuns    [2]*os.File
	wg      sync.WaitGroup
	dropped atomic.Int64
	passed  atomic.Int64
}

// wanAddrs are the point-to-point addresses of the two ends (RFC 2544's
// range, like the LANs).
var wanAddrs = [2]string{"198.18.0.1", "198.18.0.2"}

// newWAN links a and b. Each LAN's hosts route to the other LAN through
// their router (lan.router), which routes over the WAN.
func newWAN(t testing.TB, a, b *lan) *wan {
	t.Helper()
	w := &wan{}
	w.now.Store(&impairment{})
	lans := [2]*lan{a, b}
	for i, l := range lans {
		other := lans[1-i]
		var err error
		l.ns.Run(func() { w.tuns[i], err = openTUN("wan0", wanAddrs[i], wanAddrs[1-i], other.prefix+"0/24") })
		if err != nil {
			t.Fatalf("WAN end in %s0/24: %v", l.prefix, err)
		}
	}
	rng := rand.New(rand.NewPCG(2026, 12)) // seeded: the same drops each run
	var rngMu sync.Mutex
	drop := func(p float64) bool {
		rngMu.Lock()
		defer rngMu.Unlock()
		return rng.Float64() < p
	}
	for i := range 2 {
		w.wg.Add(1)
		go w.forward(w.tuns[i], w.tuns[1-i], drop)
	}
	t.Cleanup(w.close)
	return w
}

// set changes the impairment from now on (packets already delayed keep
// their delay).
func (w *wan) set(i impairment) { w.now.Store(&i) }

// forward copies packets from in to out until in is closed.
func (w *wan) forward(in, out *os.File, drop func(float64) bool) {
	defer w.wg.Done()
	type delayed struct {
		due time.Time
		pkt []byte
	}
	// A constant delay keeps the order: one queue, written in due order.
	queue := make(chan delayed, 8192)
	defer close(queue)
	go func() {
		for d := range queue {
			if wait := time.Until(d.due); wait > 0 {
				time.Sleep(wait)
			}
			_, _ = out.Write(d.pkt)
		}
	}()
	buf := make([]byte, 65536)
	for {
		n, err := in.Read(buf)
		if err != nil {
			return // closed
		}
		imp := w.now.Load()
		if imp.cut || (imp.loss > 0 && drop(imp.loss)) {
			w.dropped.Add(1)
			continue
		}
		w.passed.Add(1)
		pkt := append([]byte(nil), buf[:n]...)
		select {
		case queue <- delayed{due: time.Now().Add(imp.delay), pkt: pkt}:
		default:
			w.dropped.Add(1) // a full queue drops, as a full qdisc does
		}
	}
}

func (w *wan) close() {
	for _, f := range w.tuns {
		_ = f.Close()
	}
	w.wg.Wait()
}

// openTUN creates the TUN device name in the calling thread's namespace
// with local/32 peer remote/32, up, and a route to via through it. The
// file is non-blocking, so Close interrupts a Read.
func openTUN(name, local, remote, via string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	var req struct {
		name  [unix.IFNAMSIZ]byte
		flags uint16
		_     [22]byte
	}
	copy(req.name[:], name)
	req.flags = unix.IFF_TUN | unix.IFF_NO_PI
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETIFF, uintptr(unsafe.Pointer(&req))); errno != 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF %s: %w", name, errno)
	}
	f := os.NewFile(uintptr(fd), "/dev/net/tun:"+name)
	link, err := netlink.LinkByName(name)
	if err == nil {
		err = netlink.AddrAdd(link, &netlink.Addr{
			IPNet: &net.IPNet{IP: net.ParseIP(local), Mask: net.CIDRMask(32, 32)},
			Peer:  &net.IPNet{IP: net.ParseIP(remote), Mask: net.CIDRMask(32, 32)},
		})
	}
	if err == nil {
		err = netlink.LinkSetUp(link)
	}
	if err == nil {
		var dst *net.IPNet
		if _, dst, err = net.ParseCIDR(via); err == nil {
			err = netlink.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: dst})
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("configure %s: %w", name, err)
	}
	return f, nil
}
