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
	"syscall"

	"github.com/peerd/peerd/agent"
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
		return agent.Run(ctx, cfg, stdout)
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
