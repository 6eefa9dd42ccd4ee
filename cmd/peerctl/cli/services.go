package cli

import (
	"fmt"
	"net/url"

	"github.com/spf13/cobra"
)

// newServicesCommand returns "peerctl services": registration with the
// agent, and exports to cluster peers (services_export.go).
func newServicesCommand(a *app) *cobra.Command {
	return newGroupCommand("services", "Register services with the agent and export them to peers",
		newServicesRegisterCommand(a),
		newServicesDeregisterCommand(a),
		newServicesExportCommand(a),
		newServicesExportedServicesCommand(a),
		newServicesImportedServicesCommand(a),
	)
}

// serviceRegistration is the body of PUT /v1/agent/service/register built
// from flags; files are sent as decoded.
type serviceRegistration struct {
	ID      string            `json:",omitempty"`
	Name    string            `json:"Name"`
	Tags    []string          `json:",omitempty"`
	Address string            `json:",omitempty"`
	Port    int               `json:",omitempty"`
	Meta    map[string]string `json:",omitempty"`
}

func newServicesRegisterCommand(a *app) *cobra.Command {
	var (
		reg  serviceRegistration
		meta kvFlag
	)
	cmd := &cobra.Command{
		Use:   "register [flags] [FILE...]",
		Short: "Register services with the agent",
		Long: `Register one or more services with the agent (PUT /v1/agent/service/register),
from JSON or HCL files or from flags.

A file holds a "service" block or object, a "services" list, or a bare
service definition, in Consul's format. It is decoded here and sent to the
agent as JSON. Files and -name are mutually exclusive.`,
		Example: `  peerctl services register web.hcl db.json
  peerctl services register -name web -port 8080 -tag v1 -meta team=payments`,
		RunE: func(cmd *cobra.Command, args []string) error {
			fromFlags := cmd.Flags().Changed("name") || cmd.Flags().Changed("id") ||
				cmd.Flags().Changed("address") || cmd.Flags().Changed("port") ||
				cmd.Flags().Changed("tag") || cmd.Flags().Changed("meta")
			switch {
			case len(args) > 0 && fromFlags:
				return usageErrorf(cmd, "give service files or -name and related flags, not both")
			case len(args) == 0 && reg.Name == "":
				return usageErrorf(cmd, "missing required flag -name (or give service definition files)")
			case reg.Port < 0 || reg.Port > 65535:
				return usageErrorf(cmd, "invalid -port %d: want 0 to 65535", reg.Port)
			}

			var defs []any
			if len(args) == 0 {
				reg.Meta = meta
				defs = append(defs, reg)
			}
			for _, path := range args {
				fileDefs, err := loadServiceFile(path)
				if err != nil {
					return err
				}
				for _, d := range fileDefs {
					defs = append(defs, d)
				}
			}

			c, err := a.client()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, d := range defs {
				name := registrationName(d)
				if _, err := c.Put(cmd.Context(), "/v1/agent/service/register", nil, d); err != nil {
					return fmt.Errorf("register service %q: %w", name, err)
				}
				fmt.Fprintf(out, "Registered service: %s\n", name)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&reg.Name, "name", "", "name of the service to register (without files)")
	f.StringVar(&reg.ID, "id", "", "ID of the service (default: the name)")
	f.StringVar(&reg.Address, "address", "", "address of the service (default: the node's address)")
	f.IntVar(&reg.Port, "port", 0, "port of the service")
	f.StringArrayVar(&reg.Tags, "tag", nil, "a `tag` to add to the service; repeat for more")
	f.Var(&meta, "meta", "metadata key=value to set on the service; repeat for more")
	return cmd
}

func registrationName(d any) string {
	switch d := d.(type) {
	case serviceRegistration:
		return d.Name
	case map[string]any:
		return defString(d, "name")
	}
	return ""
}

func newServicesDeregisterCommand(a *app) *cobra.Command {
	var id string
	cmd := &cobra.Command{
		Use:   "deregister [flags] [FILE...]",
		Short: "Deregister services from the agent",
		Long: `Deregister one or more services from the agent
(PUT /v1/agent/service/deregister/<id>), named by -id or by the service
definition files they were registered from (their id, or else their name).`,
		Example: `  peerctl services deregister web.hcl
  peerctl services deregister -id web`,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) > 0 && id != "":
				return usageErrorf(cmd, "give service files or -id, not both")
			case len(args) == 0 && id == "":
				return usageErrorf(cmd, "missing required flag -id (or give service definition files)")
			}
			ids := []string{id}
			if len(args) > 0 {
				ids = nil
				for _, path := range args {
					defs, err := loadServiceFile(path)
					if err != nil {
						return err
					}
					for _, d := range defs {
						sid := defString(d, "id")
						if sid == "" {
							sid = defString(d, "name")
						}
						ids = append(ids, sid)
					}
				}
			}

			c, err := a.client()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, sid := range ids {
				if _, err := c.Put(cmd.Context(), "/v1/agent/service/deregister/"+url.PathEscape(sid), nil, nil); err != nil {
					return fmt.Errorf("deregister service %q: %w", sid, err)
				}
				fmt.Fprintf(out, "Deregistered service: %s\n", sid)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "ID of the service to deregister (without files)")
	return cmd
}
