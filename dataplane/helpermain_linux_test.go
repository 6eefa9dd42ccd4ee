package dataplane

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// runHelper is the subprocess side of startHelper. It waits for "go" on
// stdin, then:
//
//	dial <addr> <mark> [<local>]  dials addr (with SO_MARK mark if not 0,
//	                    from local ip:port if given), prints
//	                    "OK <local> <remote>" or "ERR <error>", then
//	                    answers "echo <word>" lines with "GOT <reply>"
//	                    until stdin closes.
//	rr <port> <n> <size> [<src port>]  listens on 127.0.0.1:port, dials it
//	                    (from src port if given) and runs n
//	                    request/response round trips of size bytes with
//	                    plain Read/Write (no splice), prints "OK <ns>",
//	                    then waits for stdin to close.
//	stream <port> <ms> <size>  like rr, but writes size-byte chunks for
//	                    ms milliseconds while a goroutine reads the echo;
//	                    prints "OK <bytes> <ns>", then waits for stdin to
//	                    close.
//	connect             answers "connect <ip:port> <n>" lines (n
//	                    connect+close) with "OK <ns>" until stdin closes.
func runHelper(mode string, args []string) int {
	in := bufio.NewScanner(os.Stdin)
	if !in.Scan() || in.Text() != "go" {
		return 2
	}
	switch mode {
	case "dial":
		mark, _ := strconv.Atoi(args[2])
		d := net.Dialer{Timeout: 3 * time.Second}
		if len(args) > 3 {
			la, err := net.ResolveTCPAddr("tcp", args[3])
			if err != nil {
				fmt.Println("ERR", err)
				return 0
			}
			d.LocalAddr = la
		}
		if mark != 0 {
			d.Control = func(_, _ string, c syscall.RawConn) error {
				var serr error
				err := c.Control(func(fd uintptr) {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, mark)
				})
				if err != nil {
					return err
				}
				return serr
			}
		}
		c, err := d.Dial("tcp", args[1])
		if err != nil {
			fmt.Println("ERR", err)
			return 0
		}
		fmt.Println("OK", c.LocalAddr(), c.RemoteAddr())
		r := bufio.NewReader(c)
		for in.Scan() {
			var word string
			if _, err := fmt.Sscanf(in.Text(), "echo %s", &word); err != nil {
				continue
			}
			if _, err := fmt.Fprintln(c, word); err != nil {
				fmt.Println("ERR", err)
				continue
			}
			_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
			line, err := r.ReadString('\n')
			if err != nil {
				fmt.Println("ERR", err)
				continue
			}
			fmt.Println("GOT", line[:len(line)-1])
		}
		return 0
	case "rr":
		port, _ := strconv.Atoi(args[1])
		n, _ := strconv.Atoi(args[2])
		size, _ := strconv.Atoi(args[3])
		src := 0
		if len(args) > 4 {
			src, _ = strconv.Atoi(args[4])
		}
		ns, err := roundTrips(port, n, size, src)
		if err != nil {
			fmt.Println("ERR", err)
			return 1
		}
		fmt.Println("OK", ns)
		for in.Scan() {
		}
		return 0
	case "stream":
		port, _ := strconv.Atoi(args[1])
		ms, _ := strconv.Atoi(args[2])
		size, _ := strconv.Atoi(args[3])
		bytes, ns, err := streamEcho(port, time.Duration(ms)*time.Millisecond, size)
		if err != nil {
			fmt.Println("ERR", err)
			return 1
		}
		fmt.Println("OK", bytes, ns)
		for in.Scan() {
		}
		return 0
	case "connect":
		connectLoop(in)
		return 0
	}
	return 2
}

// roundTrips runs n synchronous round trips of size bytes over a loopback
// connection to an echo server in this process and returns the elapsed
// nanoseconds. The connections stay open until the process exits.
func roundTrips(port, n, size, src int) (int64, error) {
	c, err := dialEcho(port, src)
	if err != nil {
		return 0, err
	}
	msg := make([]byte, size)
	for i := range msg {
		msg[i] = byte(i)
	}
	got := make([]byte, size)
	start := time.Now()
	for i := 0; i < n; i++ {
		if _, err := c.Write(msg); err != nil {
			return 0, err
		}
		if _, err := io.ReadFull(c, got); err != nil {
			return 0, err
		}
		if got[size-1] != msg[size-1] {
			return 0, fmt.Errorf("round trip %d: echo mismatch", i)
		}
	}
	return time.Since(start).Nanoseconds(), nil
}

// dialEcho starts an echo server on 127.0.0.1:port in this process and
// returns a connection to it (from 127.0.0.1:src when src is not 0). Both
// stay open until the process exits.
func dialEcho(port, src int) (net.Conn, error) {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return nil, err
	}
	go func() {
		s, err := ln.Accept()
		if err != nil {
			return
		}
		buf := make([]byte, 256<<10)
		for {
			k, err := s.Read(buf)
			if err != nil {
				return
			}
			if _, err := s.Write(buf[:k]); err != nil {
				return
			}
		}
	}()
	d := net.Dialer{}
	if src != 0 {
		d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: src}
	}
	return d.Dial("tcp", ln.Addr().String())
}
