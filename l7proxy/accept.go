package l7proxy

import (
	"errors"
	"log/slog"
	"net"
	"time"
)

// The pause after a failed accept starts at acceptBackoffMin and doubles
// up to acceptBackoffMax; a successful accept resets it.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// acceptLoop accepts connections on ln until ln is closed, and hands each
// to handle on a goroutine of its own. Every other accept error (out of
// file descriptors, an aborted connection) is logged as "accept on
// <what>" and retried after a backoff, so a burst of them neither spins
// the CPU nor stops the listener. sleep pauses between retries; the
// terminator passes time.Sleep. It returns when Accept reports
// net.ErrClosed.
func acceptLoop(ln net.Listener, log *slog.Logger, what string, handle func(net.Conn), sleep func(time.Duration)) {
	backoff := acceptBackoffMin
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			log.Warn("accept on "+what, "err", err)
			sleep(backoff)
			backoff = min(backoff*2, acceptBackoffMax)
			continue
		}
		backoff = acceptBackoffMin
		go handle(c)
	}
}
