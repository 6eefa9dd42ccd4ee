package cli

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// normalizeArgs rewrites Consul-style single-dash long flags ("-http-addr",
// "-format=json") to the double-dash form pflag parses ("--http-addr",
// "--format=json"), following the command path through args so it knows
// which flags exist where.
//
// A single-dash word is rewritten when its name is a long flag of the
// command reached so far (its own or inherited), or when it is longer than
// one letter and does not start with a known shorthand, so that a typo is
// reported as "unknown flag: -nmae" rather than as a shorthand cluster.
// Left alone: "-" (stdin), negative numbers, shorthands such as "-h", values
// of flags that take one, and everything after "--".
func normalizeArgs(root *cobra.Command, args []string) []string {
	out := make([]string, 0, len(args))
	cmd := root
	descend := true // the next positional word may name a subcommand
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			out = append(out, args[i:]...)
			break
		}
		if !isFlagWord(arg) {
			if descend {
				if sub := subcommand(cmd, arg); sub != nil {
					cmd = sub
				} else {
					descend = false
				}
			}
			out = append(out, arg)
			continue
		}

		long := strings.HasPrefix(arg, "--")
		name, _, hasValue := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		f := lookupFlag(cmd, name)
		if !long && (f != nil || (len(name) > 1 && !isShorthand(cmd, name[0]))) {
			arg = "-" + arg
		}
		out = append(out, arg)

		// A flag that takes a value and was not given one with "=" consumes
		// the next word, whatever it looks like, as pflag does.
		if f != nil && !hasValue && f.NoOptDefVal == "" && i+1 < len(args) && (long || len(name) > 1) {
			i++
			out = append(out, args[i])
		}
	}
	return out
}

// isFlagWord reports whether arg is a flag rather than a positional word.
func isFlagWord(arg string) bool {
	if len(arg) < 2 || arg[0] != '-' {
		return false
	}
	if _, err := strconv.ParseFloat(arg, 64); err == nil {
		return false // a negative number
	}
	return true
}

func subcommand(cmd *cobra.Command, name string) *cobra.Command {
	for _, c := range cmd.Commands() {
		if c.Name() == name || c.HasAlias(name) {
			return c
		}
	}
	if name == "help" && cmd == cmd.Root() {
		// cobra adds its help command only when executing.
		return &cobra.Command{Use: "help"}
	}
	return nil
}

// lookupFlag finds a long flag of cmd, its own or a persistent one of an
// ancestor. The help flag, which cobra adds only when executing, is treated
// as always present.
func lookupFlag(cmd *cobra.Command, name string) *pflag.Flag {
	if name == "help" {
		return &pflag.Flag{Name: "help", NoOptDefVal: "true"}
	}
	if f := cmd.Flags().Lookup(name); f != nil {
		return f
	}
	for c := cmd; c != nil; c = c.Parent() {
		if f := c.PersistentFlags().Lookup(name); f != nil {
			return f
		}
	}
	return nil
}

func isShorthand(cmd *cobra.Command, c byte) bool {
	s := string(c)
	if s == "h" {
		return true
	}
	if cmd.Flags().ShorthandLookup(s) != nil {
		return true
	}
	for p := cmd; p != nil; p = p.Parent() {
		if p.PersistentFlags().ShorthandLookup(s) != nil {
			return true
		}
	}
	return false
}

// kvFlag is a repeatable key=value flag (Consul's -meta): each use adds one
// pair, split at the first "=", so values may hold "=" and ",".
type kvFlag map[string]string

var _ pflag.Value = (*kvFlag)(nil)

func (m *kvFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", s)
	}
	if *m == nil {
		*m = make(kvFlag)
	}
	(*m)[k] = v
	return nil
}

func (m *kvFlag) String() string {
	if m == nil || len(*m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(*m))
	for k := range *m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	pairs := make([]string, len(keys))
	for i, k := range keys {
		pairs[i] = k + "=" + (*m)[k]
	}
	return strings.Join(pairs, ",")
}

func (m *kvFlag) Type() string { return "key=value" }
