package cli

import (
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/peerd/peerd/internal/decode"
)

func newConfigCommand(a *app) *cobra.Command {
	return newGroupCommand("config", "Write, read, list and delete config entries",
		newConfigWriteCommand(a),
		newConfigReadCommand(a),
		newConfigListCommand(a),
		newConfigDeleteCommand(a),
	)
}

// casFlags are config write's and delete's -cas and -modify-index.
type casFlags struct {
	cas         bool
	modifyIndex uint64
}

func (f *casFlags) add(cmd *cobra.Command, verb string) {
	cmd.Flags().BoolVar(&f.cas, "cas", false,
		"check-and-set: "+verb+" only if the entry's ModifyIndex equals -modify-index (0: only if it does not exist)")
	cmd.Flags().Uint64Var(&f.modifyIndex, "modify-index", 0, "the ModifyIndex -cas compares with")
}

func (f *casFlags) check(cmd *cobra.Command) error {
	if cmd.Flags().Changed("modify-index") && !f.cas {
		return usageErrorf(cmd, "-modify-index needs -cas")
	}
	return nil
}

// query returns ?cas=N when -cas is set.
func (f *casFlags) query() url.Values {
	if !f.cas {
		return nil
	}
	return url.Values{"cas": {strconv.FormatUint(f.modifyIndex, 10)}}
}

// configEntryPath is /v1/config/<kind>[/<name>].
func configEntryPath(kind string, name ...string) string {
	p := "/v1/config/" + url.PathEscape(kind)
	for _, n := range name {
		p += "/" + url.PathEscape(n)
	}
	return p
}

func newConfigWriteCommand(a *app) *cobra.Command {
	var cas casFlags
	cmd := &cobra.Command{
		Use:   "write [flags] FILE",
		Short: "Create or update a config entry",
		Long: `Create or update a config entry (PUT /v1/config) from a JSON or HCL file,
or from standard input when FILE is "-". HCL is converted to JSON here, so
the agent always receives JSON.`,
		Example: `  peerctl config write exported-services.hcl
  peerctl config write -cas -modify-index 42 service-defaults.json
  cat web.json | peerctl config write -`,
		Args: exactArgs(1, "one config entry file, or - for standard input"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := cas.check(cmd); err != nil {
				return err
			}
			entry, source, err := readConfigEntry(args[0], cmd.InOrStdin())
			if err != nil {
				return err
			}
			kind, name := defString(entry, "kind"), defString(entry, "name")
			if kind == "" {
				return fmt.Errorf("config entry in %s has no Kind", source)
			}

			c, err := a.client()
			if err != nil {
				return err
			}
			resp, err := c.Put(cmd.Context(), "/v1/config", cas.query(), entry)
			if err != nil {
				return fmt.Errorf("write config entry %s/%s: %w", kind, name, err)
			}
			written, err := appliedAnswer(resp)
			if err != nil {
				return fmt.Errorf("write config entry %s/%s: %w", kind, name, err)
			}
			if !written {
				// Consul's message, capitalised as consul config write prints it.
				//lint:ignore ST1005 Consul prints it capitalised; scripts match on it
				return fmt.Errorf("Config entry not updated: %s/%s", kind, name)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Config entry written: %s/%s\n", kind, name)
			return nil
		},
	}
	cas.add(cmd, "write")
	return cmd
}

// readConfigEntry reads a config entry from path ("-" is stdin) and
// decodes it from JSON or HCL. source names the input for messages.
func readConfigEntry(path string, stdin io.Reader) (entry map[string]any, source string, err error) {
	var data []byte
	source = path
	if path == "-" {
		source = "<stdin>"
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, source, fmt.Errorf("read config entry: %w", err)
	}
	entry, err = decode.Generic(data, source)
	if err != nil {
		return nil, source, decodeError("config entry", source, err)
	}
	return entry, source, nil
}

// appliedAnswer reads the true/false the agent answers to a write or a
// delete with ?cas. An empty body counts as true.
func appliedAnswer(resp *Response) (bool, error) {
	if len(resp.Body) == 0 {
		return true, nil
	}
	var ok bool
	if err := resp.Decode(&ok); err != nil {
		return false, err
	}
	return ok, nil
}

func newConfigReadCommand(a *app) *cobra.Command {
	var kind, name string
	cmd := &cobra.Command{
		Use:     "read -kind KIND -name NAME",
		Short:   "Read a config entry",
		Long:    `Print a config entry as indented JSON (GET /v1/config/<kind>/<name>).`,
		Example: `  peerctl config read -kind service-defaults -name web`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlags(cmd, "kind", "name"); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			resp, err := c.Get(cmd.Context(), configEntryPath(kind, name), nil)
			if err != nil {
				return fmt.Errorf("read config entry %s/%s: %w", kind, name, err)
			}
			return printJSON(cmd.OutOrStdout(), resp.Body)
		},
	}
	cmd.Flags().StringVar(&kind, "kind", "", "kind of the config entry, e.g. service-defaults")
	cmd.Flags().StringVar(&name, "name", "", "name of the config entry")
	return cmd
}

func newConfigListCommand(a *app) *cobra.Command {
	var kind, format string
	cmd := &cobra.Command{
		Use:   "list -kind KIND",
		Short: "List the config entries of a kind",
		Long:  `List the names of the config entries of one kind (GET /v1/config/<kind>).`,
		Example: `  peerctl config list -kind exported-services
  peerctl config list -kind service-defaults -format json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlags(cmd, "kind"); err != nil {
				return err
			}
			resp, err := a.list(cmd, format, fmt.Sprintf("list config entries of kind %s", kind), configEntryPath(kind), nil)
			if err != nil || resp == nil {
				return err
			}
			out := cmd.OutOrStdout()
			var entries []map[string]any
			if err := resp.Decode(&entries); err != nil {
				return fmt.Errorf("list config entries of kind %s: %w", kind, err)
			}
			rows := make([][]string, len(entries))
			for i, e := range entries {
				rows[i] = []string{defString(e, "name")}
			}
			return printTable(out, nil, rows)
		},
	}
	cmd.Flags().StringVar(&kind, "kind", "", "kind of config entries to list, e.g. service-defaults")
	addFormatFlag(cmd, &format)
	return cmd
}

func newConfigDeleteCommand(a *app) *cobra.Command {
	var (
		kind, name string
		cas        casFlags
	)
	cmd := &cobra.Command{
		Use:   "delete -kind KIND -name NAME",
		Short: "Delete a config entry",
		Long:  `Delete a config entry (DELETE /v1/config/<kind>/<name>).`,
		Example: `  peerctl config delete -kind service-defaults -name web
  peerctl config delete -kind service-defaults -name web -cas -modify-index 42`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlags(cmd, "kind", "name"); err != nil {
				return err
			}
			if err := cas.check(cmd); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			resp, err := c.Delete(cmd.Context(), configEntryPath(kind, name), cas.query())
			if err != nil {
				return fmt.Errorf("delete config entry %s/%s: %w", kind, name, err)
			}
			// Only a ?cas delete answers true/false; a plain one answers {}.
			if cas.cas {
				deleted, err := appliedAnswer(resp)
				if err != nil {
					return fmt.Errorf("delete config entry %s/%s: %w", kind, name, err)
				}
				if !deleted {
					//lint:ignore ST1005 Consul prints it capitalised; scripts match on it
					return fmt.Errorf("Config entry not deleted: %s/%s", kind, name)
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Config entry deleted: %s/%s\n", kind, name)
			return nil
		},
	}
	cmd.Flags().StringVar(&kind, "kind", "", "kind of the config entry, e.g. service-defaults")
	cmd.Flags().StringVar(&name, "name", "", "name of the config entry")
	cas.add(cmd, "delete")
	return cmd
}
