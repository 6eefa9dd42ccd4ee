package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"github.com/spf13/cobra"
)

// Run runs peerctl with args (the command line without the program name),
// writing results to stdout and progress or warnings to stderr. It reads
// PEERD_HTTP_ADDR and PEERD_HTTP_TOKEN from the environment and, for
// "config write -", standard input. The caller prints the returned error
// and exits with [ExitCode].
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return run(ctx, args, &env{
		stdin:  os.Stdin,
		stdout: stdout,
		stderr: stderr,
		getenv: os.Getenv,
	})
}

// ExitCode returns the process exit code for an error returned by [Run]:
// 0 for nil, 2 for a [*UsageError], 1 for anything else.
func ExitCode(err error) int {
	var uerr *UsageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &uerr):
		return 2
	default:
		return 1
	}
}

// env is what a run may touch outside the process: its streams and
// environment. Tests fill it in instead of changing the real ones.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

func run(ctx context.Context, args []string, e *env) error {
	root := newRootCommand(e)
	root.SetArgs(normalizeArgs(root, args))
	root.SetIn(e.stdin)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	return root.ExecuteContext(ctx)
}

// app holds the global flags and the environment one run shares between its
// commands.
type app struct {
	env       *env
	httpAddr  string
	token     string
	tokenFile string
	tls       tlsFlags
}

// client returns an HTTP client for the agent chosen by -http-addr,
// PEERD_HTTP_ADDR, CONSUL_HTTP_ADDR or the default, in that order, with
// the HTTPS settings of tlsConfig.
func (a *app) client() (*Client, error) {
	addr, err := a.address()
	if err != nil {
		return nil, err
	}
	tlsCfg, err := a.tlsConfig()
	if err != nil {
		return nil, err
	}
	token, err := a.requestToken()
	if err != nil {
		return nil, err
	}
	return NewClient(ClientConfig{Address: addr, Token: token, TLS: tlsCfg})
}

// requestToken is the ACL token to send, from the first source set:
// -token, -token-file, $PEERD_HTTP_TOKEN, $CONSUL_HTTP_TOKEN,
// $CONSUL_HTTP_TOKEN_FILE (Consul's order, with peerd's variable first).
func (a *app) requestToken() (string, error) {
	fromFile := func(what, path string) (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("read the ACL token from %s %s: %w", what, path, err)
		}
		t := strings.TrimSpace(string(b))
		if t == "" {
			return "", fmt.Errorf("read the ACL token from %s %s: the file is empty", what, path)
		}
		return t, nil
	}
	switch {
	case a.token != "":
		return a.token, nil
	case a.tokenFile != "":
		return fromFile("-token-file", a.tokenFile)
	case a.env.getenv(EnvHTTPToken) != "":
		return a.env.getenv(EnvHTTPToken), nil
	case a.env.getenv(EnvConsulHTTPToken) != "":
		return a.env.getenv(EnvConsulHTTPToken), nil
	case a.env.getenv(EnvConsulHTTPTokenFile) != "":
		return fromFile("$"+EnvConsulHTTPTokenFile, a.env.getenv(EnvConsulHTTPTokenFile))
	}
	return "", nil
}

// newRootCommand builds the whole command tree. New command groups add one
// AddCommand line here and live in their own file.
func newRootCommand(e *env) *cobra.Command {
	a := &app{env: e}
	root := &cobra.Command{
		Use:   "peerctl",
		Short: "Operate a peerd cluster through an agent's HTTP API",
		Long: `peerctl operates a peerd cluster through any agent's Consul-compatible HTTP API.

Flags take one or two dashes: -http-addr and --http-addr are the same flag.

Environment:
  ` + EnvHTTPAddr + `   agent address, host:port, http://host:port or https://host:port (default ` + DefaultHTTPAddr + `;
                    then ` + EnvConsulHTTPAddr + `, and ` + EnvConsulHTTPSSL + `=true for https)
  ` + EnvHTTPToken + `  ACL token sent as X-Consul-Token
  ` + EnvConsulHTTPToken + `, ` + EnvConsulHTTPTokenFile + `  Consul's, read after the above
  ` + EnvCACert + `      CA file of the agent's HTTPS certificate (or ` + EnvConsulCACert + `)
  ` + EnvClientCert + `, ` + EnvClientKey + `  client certificate and key
  ` + EnvTLSServerName + `  name the agent's certificate must carry`,
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          cobra.ArbitraryArgs,
		RunE:          runGroup,

		SuggestionsMinimumDistance: 2,
	}
	root.SetFlagErrorFunc(flagError)
	root.SetUsageFunc(writeUsage)
	pf := root.PersistentFlags()
	pf.StringVar(&a.httpAddr, "http-addr", "",
		"agent HTTP address, host:port or http://host:port (default $"+EnvHTTPAddr+" or "+DefaultHTTPAddr+")")
	pf.StringVar(&a.token, "token", "", "ACL token sent as X-Consul-Token (default: -token-file, $"+EnvHTTPToken+", $"+EnvConsulHTTPToken+", $"+EnvConsulHTTPTokenFile+")")
	pf.StringVar(&a.tokenFile, "token-file", "", "file holding the ACL token")
	pf.StringVar(&a.tls.caFile, "ca-file", "", "PEM CA file that verifies the agent's HTTPS certificate (default $"+EnvCACert+" or $"+EnvConsulCACert+")")
	pf.StringVar(&a.tls.clientCert, "client-cert", "", "PEM client certificate, for an agent that verifies incoming HTTPS (default $"+EnvClientCert+")")
	pf.StringVar(&a.tls.clientKey, "client-key", "", "PEM key of -client-cert (default $"+EnvClientKey+")")
	pf.StringVar(&a.tls.serverName, "tls-server-name", "", "name the agent's HTTPS certificate must carry, e.g. api.<trust domain> (default $"+EnvTLSServerName+")")

	root.AddCommand(
		newMembersCommand(a),
		newCatalogCommand(a),
		newServicesCommand(a),
		newConfigCommand(a),
		newPeeringCommand(a),
		newSnapshotCommand(a),
		newCACommand(a),
		newJoinTokenCommand(a),
		newNodeCommand(a),
		newKeyringCommand(a),
		newDataplaneCommand(a),
		newOperatorCommand(a),
		newACLCommand(a),
		newVersionCommand(),
	)
	return root
}

// newGroupCommand returns a command that only holds subcommands: run bare it
// prints its help, and an unknown subcommand is a usage error.
func newGroupCommand(use, short string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ArbitraryArgs,
		RunE:  runGroup,

		SuggestionsMinimumDistance: 2,
	}
	c.AddCommand(subs...)
	return c
}

func runGroup(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return cmd.Help()
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += fmt.Sprintf("; did you mean %q?", s[0])
	}
	return &UsageError{Msg: msg, Command: cmd.CommandPath()}
}

// UsageError is a command line peerctl cannot run: a missing or bad flag or
// argument. Its message names the flag and, where the command has one, shows
// an example.
type UsageError struct {
	// Msg says what is wrong, e.g. "missing required flag -name".
	Msg string
	// Example is the command's example invocation, if any.
	Example string
	// Command is the command path, e.g. "peerctl config read".
	Command string
}

func (e *UsageError) Error() string {
	var b strings.Builder
	b.WriteString(e.Msg)
	if e.Example != "" {
		b.WriteString("\n\nExample:\n")
		b.WriteString(e.Example)
	}
	if e.Command != "" {
		fmt.Fprintf(&b, "\n\nRun '%s -h' for all flags.", e.Command)
	}
	return b.String()
}

// usageErrorf returns a [*UsageError] for cmd.
func usageErrorf(cmd *cobra.Command, format string, args ...any) error {
	return &UsageError{
		Msg:     fmt.Sprintf(format, args...),
		Example: cmd.Example,
		Command: cmd.CommandPath(),
	}
}

// flagError turns pflag's parse errors into usage errors and speaks of flags
// the way the user typed them (-name, not --name).
func flagError(cmd *cobra.Command, err error) error {
	msg := err.Error()
	msg = strings.ReplaceAll(msg, `"--`, `"-`)
	msg = strings.ReplaceAll(msg, "flag: --", "flag: -")
	return &UsageError{Msg: msg, Command: cmd.CommandPath()}
}

// requireFlags returns a usage error naming every listed flag of cmd that
// is empty.
func requireFlags(cmd *cobra.Command, names ...string) error {
	var missing []string
	for _, name := range names {
		f := cmd.Flags().Lookup(name)
		if f == nil || f.Value.String() == "" {
			missing = append(missing, "-"+name)
		}
	}
	switch len(missing) {
	case 0:
		return nil
	case 1:
		return usageErrorf(cmd, "missing required flag %s", missing[0])
	default:
		return usageErrorf(cmd, "missing required flags %s", strings.Join(missing, ", "))
	}
}

// exactArgs is cobra.ExactArgs returning a usage error that says what the
// arguments are, e.g. exactArgs(1, "one config file").
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) == 0 && n > 0:
			return usageErrorf(cmd, "missing argument: want %s", what)
		case len(args) != n:
			return usageErrorf(cmd, "want %s, got %d arguments", what, len(args))
		}
		return nil
	}
}

// noArgs is cobra.NoArgs returning a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf(cmd, "unexpected argument %q: %s takes flags only", args[0], cmd.CommandPath())
	}
	return nil
}

// flagDashes matches the "--" that starts each flag name in pflag's usage
// lines ("  -h, --help", "      --name string").
var flagDashes = regexp.MustCompile(`(?m)^(\s*(?:-\w, )?)--`)

// writeUsage is cobra's usage text with flags shown the way Consul users
// type them, -name rather than --name (both work).
func writeUsage(cmd *cobra.Command) error {
	w := cmd.OutOrStderr()
	var b strings.Builder
	b.WriteString("Usage:\n")
	if cmd.Runnable() && !cmd.HasAvailableSubCommands() {
		fmt.Fprintf(&b, "  %s\n", cmd.UseLine())
	}
	if cmd.HasAvailableSubCommands() {
		fmt.Fprintf(&b, "  %s [command]\n", cmd.CommandPath())
	}
	if cmd.HasExample() {
		fmt.Fprintf(&b, "\nExamples:\n%s\n", cmd.Example)
	}
	if cmd.HasAvailableSubCommands() {
		b.WriteString("\nAvailable Commands:\n")
		var rows [][]string
		for _, c := range cmd.Commands() {
			if c.IsAvailableCommand() || c.Name() == "help" {
				rows = append(rows, []string{"  " + c.Name(), c.Short})
			}
		}
		if err := printTable(&b, nil, rows); err != nil {
			return err
		}
	}
	if cmd.HasAvailableLocalFlags() {
		fmt.Fprintf(&b, "\nFlags:\n%s", flagDashes.ReplaceAllString(cmd.LocalFlags().FlagUsages(), "$1-"))
	}
	if cmd.HasAvailableInheritedFlags() {
		fmt.Fprintf(&b, "\nGlobal Flags:\n%s", flagDashes.ReplaceAllString(cmd.InheritedFlags().FlagUsages(), "$1-"))
	}
	if cmd.HasAvailableSubCommands() {
		fmt.Fprintf(&b, "\nUse \"%s [command] -h\" for more information about a command.\n", cmd.CommandPath())
	}
	_, err := io.WriteString(w, b.String())
	return err
}
