// Command echo is the demo's workload: an HTTP server that answers every
// request with what it received, including the caller identity the peerd
// gateway passed in X-Forwarded-Client-Cert. It prints its address on the
// first line of standard output.
//
//	echo -name billing -listen 127.0.0.1:0
//	echo -print-free-port
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

type reply struct {
	Service string `json:"service"`
	Method  string `json:"method"`
	Path    string `json:"path"`
	// Caller is the SPIFFE ID in X-Forwarded-Client-Cert's URI field.
	Caller string `json:"caller"`
	XFCC   string `json:"x_forwarded_client_cert"`
}

func main() {
	name := flag.String("name", "echo", "service name to report")
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	freePort := flag.Bool("print-free-port", false, "print a free loopback TCP port and exit (for scripts)")
	flag.Parse()
	if *freePort {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, "echo:", err)
			os.Exit(1)
		}
		fmt.Println(ln.Addr().(*net.TCPAddr).Port)
		ln.Close()
		return
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr().String())
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		xfcc := r.Header.Get("X-Forwarded-Client-Cert")
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(reply{Service: *name, Method: r.Method, Path: r.URL.Path, Caller: xfccURI(xfcc), XFCC: xfcc})
	})}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
}

// xfccURI returns the URI= element of an XFCC header.
func xfccURI(xfcc string) string {
	for _, part := range strings.Split(xfcc, ";") {
		if v, ok := strings.CutPrefix(part, "URI="); ok {
			return v
		}
	}
	return ""
}
