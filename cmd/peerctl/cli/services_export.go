package cli

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

// exportedServicesEntryPath is the cluster's one exported-services config
// entry (it is named after the partition).
const exportedServicesEntryPath = "/v1/config/exported-services/default"

// exportCASAttempts bounds the read-modify-write retries of services export
// when another writer changes the entry in between.
const exportCASAttempts = 10

func newServicesExportCommand(a *app) *cobra.Command {
	var name, peers, namespace string
	cmd := &cobra.Command{
		Use:   "export -name SERVICE -consumer-peers PEER[,PEER...]",
		Short: "Export a service to cluster peers",
		Long: `Export a service to cluster peers by adding them as consumers of the service
in the exported-services config entry. Other services and consumers in the
entry are kept. The entry is updated with check-and-set, retried if another
writer changed it in between.`,
		Example: `  peerctl services export -name web -consumer-peers cluster-02,cluster-03`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlags(cmd, "name", "consumer-peers"); err != nil {
				return err
			}
			consumers := splitList(peers)
			if len(consumers) == 0 {
				return usageErrorf(cmd, "-consumer-peers names no peer")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			for attempt := 1; ; attempt++ {
				entry, index, err := readExportedServicesEntry(cmd, c)
				if err != nil {
					return fmt.Errorf("export service %s: %w", name, err)
				}
				addConsumers(entry, name, namespace, consumers)
				resp, err := c.Put(cmd.Context(), "/v1/config", url.Values{"cas": {strconv.FormatUint(index, 10)}}, entry)
				if err != nil {
					return fmt.Errorf("export service %s: %w", name, err)
				}
				written, err := appliedAnswer(resp)
				if err != nil {
					return fmt.Errorf("export service %s: %w", name, err)
				}
				if written {
					break
				}
				if attempt == exportCASAttempts {
					return fmt.Errorf("export service %s: the exported-services entry kept changing during %d attempts; try again", name, attempt)
				}
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "Successfully exported service %s to cluster peers %s\n", name, strings.Join(consumers, ", "))
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", `name of the service to export ("*" for every service)`)
	f.StringVar(&peers, "consumer-peers", "", "comma-separated list of peers to export the service to")
	f.StringVar(&namespace, "namespace", "", "namespace of the service (peerd has only the default one)")
	return cmd
}

// readExportedServicesEntry returns the exported-services entry as generic
// JSON, so fields peerctl does not know survive the write, and its
// ModifyIndex (0 when there is no entry yet: the write then only creates).
func readExportedServicesEntry(cmd *cobra.Command, c *Client) (map[string]any, uint64, error) {
	resp, err := c.Get(cmd.Context(), exportedServicesEntryPath, nil)
	var se *StatusError
	if errors.As(err, &se) && se.StatusCode == http.StatusNotFound {
		return map[string]any{"Kind": "exported-services", "Name": "default"}, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read the exported-services entry: %w", err)
	}
	var entry map[string]any
	if err := resp.Decode(&entry); err != nil {
		return nil, 0, fmt.Errorf("read the exported-services entry: %w", err)
	}
	index, _ := entry["ModifyIndex"].(float64)
	delete(entry, "CreateIndex")
	delete(entry, "ModifyIndex")
	return entry, uint64(index), nil
}

// addConsumers adds peers as consumers of service in the generic entry,
// creating the service's item if needed and skipping peers already there.
func addConsumers(entry map[string]any, service, namespace string, peers []string) {
	services, _ := entry["Services"].([]any)
	var item map[string]any
	for _, s := range services {
		m, ok := s.(map[string]any)
		if !ok {
			continue
		}
		ns, _ := m["Namespace"].(string)
		if n, _ := m["Name"].(string); n == service && (ns == namespace || (ns == "default" && namespace == "") || (ns == "" && namespace == "default")) {
			item = m
			break
		}
	}
	if item == nil {
		item = map[string]any{"Name": service}
		if namespace != "" {
			item["Namespace"] = namespace
		}
		services = append(services, item)
	}
	consumers, _ := item["Consumers"].([]any)
	var have []string
	for _, c := range consumers {
		if m, ok := c.(map[string]any); ok {
			if p, _ := m["Peer"].(string); p != "" {
				have = append(have, p)
			}
		}
	}
	for _, p := range peers {
		if !slices.Contains(have, p) {
			consumers = append(consumers, map[string]any{"Peer": p})
			have = append(have, p)
		}
	}
	item["Consumers"] = consumers
	entry["Services"] = services
}

func newServicesExportedServicesCommand(a *app) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "exported-services",
		Short: "List the services exported to cluster peers",
		Long: `List every exported service with the peers it is exported to
(GET /v1/exported-services); "*" in the exported-services entry is expanded.`,
		Example: `  peerctl services exported-services
  peerctl services exported-services -format json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := a.list(cmd, format, "list exported services", "/v1/exported-services", nil)
			if err != nil || resp == nil {
				return err
			}
			out := cmd.OutOrStdout()
			var list []struct {
				Service   string
				Consumers struct{ Peers []string }
			}
			if err := resp.Decode(&list); err != nil {
				return fmt.Errorf("list exported services: %w", err)
			}
			if len(list) == 0 {
				_, err := fmt.Fprintln(out, "No exported services found")
				return err
			}
			rows := make([][]string, len(list))
			for i, s := range list {
				rows[i] = []string{s.Service, strings.Join(s.Consumers.Peers, ", ")}
			}
			return printTable(out, []string{"Service", "Consumer Peers"}, rows)
		},
	}
	addFormatFlag(cmd, &format)
	return cmd
}

func newServicesImportedServicesCommand(a *app) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "imported-services",
		Short: "List the services imported from cluster peers",
		Long:  `List every service imported from a cluster peer (GET /v1/imported-services).`,
		Example: `  peerctl services imported-services
  peerctl services imported-services -format json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := a.list(cmd, format, "list imported services", "/v1/imported-services", nil)
			if err != nil || resp == nil {
				return err
			}
			out := cmd.OutOrStdout()
			var list []struct{ Service, SourcePeer string }
			if err := resp.Decode(&list); err != nil {
				return fmt.Errorf("list imported services: %w", err)
			}
			if len(list) == 0 {
				_, err := fmt.Fprintln(out, "No imported services found")
				return err
			}
			rows := make([][]string, len(list))
			for i, s := range list {
				rows[i] = []string{s.Service, s.SourcePeer}
			}
			return printTable(out, []string{"Service", "Source Peer"}, rows)
		},
	}
	addFormatFlag(cmd, &format)
	return cmd
}
