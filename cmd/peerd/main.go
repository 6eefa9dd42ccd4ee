// Command peerd is the peerd node daemon: `peerd agent` runs a node,
// `peerd keygen` makes a gossip encryption key, `peerd version` prints the
// version. agent/config turns flags and files into the agent's
// configuration; agent does the rest.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/peerd/peerd/agent"
	"github.com/peerd/peerd/agent/admission"
	"github.com/peerd/peerd/agent/config"
	"github.com/peerd/peerd/cmd/peerctl/cli"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `Usage: peerd <command> [flags]

Commands:
  agent     run a peerd node (peerd agent -dev for a single-node cluster in memory)
  keygen    print a new gossip encryption key for -encrypt
  join-token create|list|revoke
            join tokens that admit new nodes (run against a server; same as peerctl join-token)
  trust init -first-server NODE -server-addr HOST:PORT... -out DIR [-datacenter DC] [-ttl D] [-encrypt KEY]
            make a cluster's CA and join tokens before any node runs (servers that start together)
  validate  check config files or directories without starting an agent
  dataplane cleanup [-bpf-pin-dir DIR]
            detach and remove every eBPF object peerd pinned (default /sys/fs/bpf/peerd)
  version   print the version

Run 'peerd agent -h' for the agent's flags.
`

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "peerd:", err)
		}
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("missing command")
	}
	switch args[0] {
	case "agent":
		cfg, err := config.Parse(args[1:], stderr)
		if err != nil {
			return err
		}
		cfg.Version = version
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		// SIGHUP reloads: a new process takes the listeners over (agent.RunReloadable).
		return agent.RunReloadable(ctx, cfg, stdout)
	case "keygen":
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return fmt.Errorf("generate key: %w", err)
		}
		fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(key))
		return nil
	case "join-token":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return cli.Run(ctx, args, stdout, stderr)
	case "trust":
		return trustInit(args[1:], stdout, stderr)
	case "validate":
		if len(args) < 2 {
			return errors.New("validate: name at least one config file or directory")
		}
		if err := config.Check(args[1:]...); err != nil {
			return fmt.Errorf("invalid configuration:\n%w", err)
		}
		fmt.Fprintln(stdout, "Configuration is valid!")
		return nil
	case "dataplane":
		if len(args) < 2 || args[1] != "cleanup" {
			return errors.New("dataplane: the only subcommand is cleanup (peerd dataplane cleanup [-bpf-pin-dir DIR])")
		}
		fs := flag.NewFlagSet("peerd dataplane cleanup", flag.ContinueOnError)
		fs.SetOutput(stderr)
		dir := fs.String("bpf-pin-dir", "", "bpffs directory of the pins (default /sys/fs/bpf/peerd)")
		if err := fs.Parse(args[2:]); err != nil {
			return err
		}
		if err := agent.CleanupDataplane(*dir); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "Dataplane removed: no program, map or link of peerd is left pinned or attached.")
		return nil
	case "version", "-version", "--version":
		fmt.Fprintf(stdout, "peerd %s\n", version)
		return nil
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

// trustInit is `peerd trust init`: a cluster's trust made before its nodes
// run, for servers that start together (a Kubernetes StatefulSet).
func trustInit(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "init" {
		return errors.New("trust: the only subcommand is init (peerd trust init -first-server NODE -server-addr HOST:PORT -out DIR)")
	}
	fs := flag.NewFlagSet("peerd trust init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	first := fs.String("first-server", "", "node name of the server that bootstraps the cluster (e.g. peerd-server-0)")
	dc := fs.String("datacenter", "dc1", "the cluster's datacenter")
	ttl := fs.Duration("ttl", 365*24*time.Hour, "how long the two join tokens admit nodes")
	key := fs.String("encrypt", "", "gossip key the tokens carry (default: a new one)")
	out := fs.String("out", "", "directory to write bootstrap.json, server.token and client.token to (created 0700)")
	var servers stringList
	fs.Var(&servers, "server-addr", "TLS gRPC address (host:port, 8503) joining nodes reach the first server at; repeatable")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *out == "" || len(servers) == 0 {
		return errors.New("trust init: -out DIR and at least one -server-addr HOST:PORT are required")
	}
	if *key == "" {
		raw := make([]byte, 32)
		if _, err := rand.Read(raw); err != nil {
			return fmt.Errorf("trust init: gossip key: %w", err)
		}
		*key = base64.StdEncoding.EncodeToString(raw)
	}
	b, serverTok, clientTok, err := admission.NewBootstrap(*first, *dc, servers, *key, *ttl, time.Now())
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o700); err != nil {
		return fmt.Errorf("trust init: %w", err)
	}
	if err := b.Save(filepath.Join(*out, "bootstrap.json")); err != nil {
		return fmt.Errorf("trust init: %w", err)
	}
	for name, tok := range map[string]string{"server.token": serverTok, "client.token": clientTok} {
		if err := os.WriteFile(filepath.Join(*out, name), []byte(tok+"\n"), 0o600); err != nil {
			return fmt.Errorf("trust init: %w", err)
		}
	}
	fmt.Fprintf(stdout, "Cluster trust for datacenter %s (trust domain %s) in %s:\n", *dc, b.Seed.Root.TrustDomain, *out)
	fmt.Fprintf(stdout, "  bootstrap.json  the CA and secrets key: only %s starts from it (-trust-bootstrap); keep it secret\n", *first)
	fmt.Fprintf(stdout, "  server.token    admits servers (-join-token-file), expires %s\n", time.Now().Add(*ttl).UTC().Format(time.RFC3339))
	fmt.Fprintf(stdout, "  client.token    admits clients (-join-token-file)\n")
	return nil
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
