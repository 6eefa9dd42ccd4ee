// Package sdnotify sends systemd's service notifications (sd_notify(3)):
// READY=1 once the agent serves, RELOADING=1 when a reload starts,
// MAINPID=<pid> when a new process takes over, STOPPING=1. It writes the
// few lines of the protocol itself (one datagram to $NOTIFY_SOCKET)
// rather than pull in a library for them. Without NOTIFY_SOCKET (not
// under systemd, or Type= is not notify) nothing is sent.
package sdnotify

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// MonotonicUsec is CLOCK_MONOTONIC in microseconds, which systemd wants
// as MONOTONIC_USEC with RELOADING=1; 0 if the clock cannot be read.
func MonotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1000
}

// Notifier sends to one notification socket; the zero value sends nothing.
type Notifier struct {
	addr string
}

// FromEnv returns a Notifier for $NOTIFY_SOCKET (a path, or "@name" for an
// abstract socket); without it, one that sends nothing.
func FromEnv() Notifier { return Notifier{addr: os.Getenv("NOTIFY_SOCKET")} }

// Send sends state (newline-separated KEY=VALUE lines). A failure is
// returned: systemd would then not see the state (a unit would time out
// waiting for READY=1), which the caller logs.
func (n Notifier) Send(state string) error {
	if n.addr == "" {
		return nil
	}
	addr := n.addr
	if addr[0] == '@' {
		addr = "\x00" + addr[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify: connect to %s: %w", n.addr, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify: send %q to %s: %w", state, n.addr, err)
	}
	return nil
}
