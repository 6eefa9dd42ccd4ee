package cli

import (
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/spf13/cobra"
)

func newCatalogCommand(a *app) *cobra.Command {
	return newGroupCommand("catalog", "List services and nodes in the catalog",
		newCatalogServicesCommand(a),
		newCatalogNodesCommand(a),
	)
}

func newCatalogServicesCommand(a *app) *cobra.Command {
	var (
		format   string
		showTags bool
		peer     string
	)
	cmd := &cobra.Command{
		Use:   "services",
		Short: "List the services in the catalog",
		Long: `List the names of the services in the catalog (GET /v1/catalog/services),
or with -peer the services imported from that peer.`,
		Example: `  peerctl catalog services
  peerctl catalog services -tags
  peerctl catalog services -peer cluster-02`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{}
			if peer != "" {
				q.Set("peer", peer)
			}
			resp, err := a.list(cmd, format, "list catalog services", "/v1/catalog/services", q)
			if err != nil || resp == nil {
				return err
			}
			out := cmd.OutOrStdout()
			var services map[string][]string
			if err := resp.Decode(&services); err != nil {
				return fmt.Errorf("list catalog services: %w", err)
			}
			names := make([]string, 0, len(services))
			for name := range services {
				names = append(names, name)
			}
			sort.Strings(names)
			rows := make([][]string, len(names))
			for i, name := range names {
				rows[i] = []string{name}
				if showTags {
					tags := append([]string(nil), services[name]...)
					sort.Strings(tags)
					rows[i] = append(rows[i], strings.Join(tags, ","))
				}
			}
			// Like consul catalog services: names only, no header.
			return printTable(out, nil, rows)
		},
	}
	cmd.Flags().BoolVar(&showTags, "tags", false, "show each service's tags")
	cmd.Flags().StringVar(&peer, "peer", "", "list the services imported from this peer instead of local ones")
	addFormatFlag(cmd, &format)
	return cmd
}

// catalogNode is one entry of GET /v1/catalog/nodes, the fields peerctl
// shows.
type catalogNode struct {
	ID              string
	Node            string
	Address         string
	Datacenter      string
	TaggedAddresses map[string]string
	Meta            map[string]string
}

func newCatalogNodesCommand(a *app) *cobra.Command {
	var (
		format   string
		detailed bool
	)
	cmd := &cobra.Command{
		Use:   "nodes",
		Short: "List the nodes in the catalog",
		Long:  `List the nodes in the catalog (GET /v1/catalog/nodes).`,
		Example: `  peerctl catalog nodes
  peerctl catalog nodes -detailed`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := a.list(cmd, format, "list catalog nodes", "/v1/catalog/nodes", nil)
			if err != nil || resp == nil {
				return err
			}
			out := cmd.OutOrStdout()
			var nodes []catalogNode
			if err := resp.Decode(&nodes); err != nil {
				return fmt.Errorf("list catalog nodes: %w", err)
			}
			sort.SliceStable(nodes, func(i, j int) bool { return nodes[i].Node < nodes[j].Node })
			if detailed {
				rows := make([][]string, len(nodes))
				for i, n := range nodes {
					rows[i] = []string{n.Node, n.ID, n.Address, n.Datacenter,
						joinPairs(n.TaggedAddresses, ", "), joinPairs(n.Meta, ", ")}
				}
				return printTable(out, []string{"Node", "ID", "Address", "DC", "TaggedAddresses", "Meta"}, rows)
			}
			rows := make([][]string, len(nodes))
			for i, n := range nodes {
				rows[i] = []string{n.Node, shortID(n.ID), n.Address, n.Datacenter}
			}
			return printTable(out, []string{"Node", "ID", "Address", "DC"}, rows)
		},
	}
	cmd.Flags().BoolVar(&detailed, "detailed", false, "show full node IDs, tagged addresses and metadata")
	addFormatFlag(cmd, &format)
	return cmd
}

// shortID is the first 8 characters of a node ID, as consul catalog nodes
// shows it.
func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
