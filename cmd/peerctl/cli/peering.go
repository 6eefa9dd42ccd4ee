package cli

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func newPeeringCommand(a *app) *cobra.Command {
	return newGroupCommand("peering", "Create and manage peering connections with other clusters",
		newPeeringGenerateTokenCommand(a),
		newPeeringEstablishCommand(a),
		newPeeringListCommand(a),
		newPeeringReadCommand(a),
		newPeeringDeleteCommand(a),
		newPeeringRotateSecretCommand(a),
		newPeeringExportedServicesCommand(a),
	)
}

// peeringObject is the part of GET /v1/peering/:name that peerctl shows
// (Consul's api.Peering, plus peerd's LastError, ReplicationLagMs, the
// pinned PeerTrustDomain and the refusals of the peer's messages).
type peeringObject struct {
	ID                  string
	Name                string
	Partition           string
	DeletedAt           *time.Time
	Meta                map[string]string
	State               string
	PeerID              string
	PeerCAPems          []string
	PeerServerName      string
	PeerServerAddresses []string
	StreamStatus        struct {
		ImportedServices []string
		ExportedServices []string
		LastHeartbeat    *time.Time
		LastReceive      *time.Time
		LastSend         *time.Time
	}
	Remote struct {
		Partition  string
		Datacenter string
	}
	CreateIndex      uint64
	ModifyIndex      uint64
	LastError        string
	ReplicationLagMs int64
	PeerTrustDomain  string
	QuotaRefusals    map[string]uint64
	ImportRefusals   map[string]uint64
	LastRefusal      string
	LastRefusalAt    *time.Time
	// StreamSecret is set on the acceptor only.
	StreamSecret *struct {
		BoundTrustDomain string
		ActiveSince      *time.Time
		RotationPending  bool
	}
}

func peeringPath(name string) string { return "/v1/peering/" + url.PathEscape(name) }

// splitList splits a comma-separated flag value, dropping empty items and
// surrounding spaces.
func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// formatMeta renders metadata as sorted k=v pairs joined by sep.
func formatMeta(m map[string]string, sep string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	pairs := make([]string, len(keys))
	for i, k := range keys {
		pairs[i] = k + "=" + m[k]
	}
	return strings.Join(pairs, sep)
}

func newPeeringGenerateTokenCommand(a *app) *cobra.Command {
	var (
		name, addrs, format string
		meta                kvFlag
		expiresIn           time.Duration
	)
	cmd := &cobra.Command{
		Use:   "generate-token -name NAME",
		Short: "Generate a peering token for another cluster to establish with",
		Long: `Generate a peering token (POST /v1/peering/token) for the cluster that will
be known here as NAME. Hand the token to that cluster's operator, who runs
"peerctl peering establish" with it. A token can be used once.

Generating a new token for the same name invalidates the earlier unused
token, but does not disturb an established connection.

With -format pretty (the default) only the token is printed, so that it can
be captured by a script.`,
		Example: `  peerctl peering generate-token -name cluster-02
  peerctl peering generate-token -name cluster-02 -server-external-addresses 1.2.3.4:8503 -expires-in 24h`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(cmd, &format); err != nil {
				return err
			}
			if err := requireFlags(cmd, "name"); err != nil {
				return err
			}
			if cmd.Flags().Changed("expires-in") && expiresIn <= 0 {
				return usageErrorf(cmd, "-expires-in must be a positive duration, got %s", expiresIn)
			}
			body := map[string]any{"PeerName": name}
			if len(meta) > 0 {
				body["Meta"] = map[string]string(meta)
			}
			if list := splitList(addrs); len(list) > 0 {
				body["ServerExternalAddresses"] = list
			}
			if expiresIn > 0 {
				body["ExpiresIn"] = expiresIn.String()
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			resp, err := c.Post(cmd.Context(), "/v1/peering/token", nil, body)
			if err != nil {
				return fmt.Errorf("generate peering token for %s: %w", name, err)
			}
			out := cmd.OutOrStdout()
			if format == formatJSON {
				return printJSON(out, resp.Body)
			}
			var answer struct{ PeeringToken string }
			if err := resp.Decode(&answer); err != nil {
				return fmt.Errorf("generate peering token for %s: %w", name, err)
			}
			_, err = fmt.Fprintln(out, answer.PeeringToken)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "local name of the peer the token is for (a lowercase DNS label)")
	f.StringVar(&addrs, "server-external-addresses", "",
		"comma-separated host:port list the peer dials instead of this cluster's servers (load balancer, NAT)")
	f.Var(&meta, "meta", "metadata key=value to store on the peering; repeat for more")
	f.DurationVar(&expiresIn, "expires-in", 0, "how long the token stays valid, e.g. 1h (default: until used or superseded)")
	addPeeringFormatFlag(cmd, &format)
	return cmd
}

// addPeeringFormatFlag is -format as Consul's peering commands have it:
// "pretty" (the default) or "json".
func addPeeringFormatFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVar(p, "format", "pretty", `output format: "pretty" for people, "json" for the agent's JSON answer`)
}

func newPeeringEstablishCommand(a *app) *cobra.Command {
	var (
		name, token string
		meta        kvFlag
	)
	cmd := &cobra.Command{
		Use:   "establish -name NAME -peering-token TOKEN",
		Short: "Establish a peering connection with a token from another cluster",
		Long: `Establish a peering connection (POST /v1/peering/establish) with the cluster
that generated TOKEN, which will be known here as NAME. This cluster then
dials the other one and keeps the connection open.`,
		Example: `  peerctl peering establish -name cluster-01 -peering-token eyJDQSI6...`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlags(cmd, "name", "peering-token"); err != nil {
				return err
			}
			body := map[string]any{"PeerName": name, "PeeringToken": token}
			if len(meta) > 0 {
				body["Meta"] = map[string]string(meta)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if _, err := c.Post(cmd.Context(), "/v1/peering/establish", nil, body); err != nil {
				return fmt.Errorf("establish peering with %s: %w", name, err)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "Successfully established peering connection with %s\n", name)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "local name of the peer (a lowercase DNS label)")
	f.StringVar(&token, "peering-token", "", "the token generated by the other cluster")
	f.Var(&meta, "meta", "metadata key=value to store on the peering; repeat for more")
	return cmd
}

func newPeeringListCommand(a *app) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List this cluster's peering connections",
		Long:  `List the peering connections (GET /v1/peerings) with their state and service counts.`,
		Example: `  peerctl peering list
  peerctl peering list -format json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := a.list(cmd, format, "list peerings", "/v1/peerings", nil)
			if err != nil || resp == nil {
				return err
			}
			out := cmd.OutOrStdout()
			var list []peeringObject
			if err := resp.Decode(&list); err != nil {
				return fmt.Errorf("list peerings: %w", err)
			}
			if len(list) == 0 {
				_, err := fmt.Fprintln(out, "There are no peering connections.")
				return err
			}
			slices.SortFunc(list, func(x, y peeringObject) int { return strings.Compare(x.Name, y.Name) })
			rows := make([][]string, len(list))
			for i, p := range list {
				rows[i] = []string{p.Name, p.State, fmt.Sprint(len(p.StreamStatus.ImportedServices)),
					fmt.Sprint(len(p.StreamStatus.ExportedServices)), formatMeta(p.Meta, ",")}
			}
			return printTable(out, []string{"Name", "State", "Imported Svcs", "Exported Svcs", "Meta"}, rows)
		},
	}
	addPeeringFormatFlag(cmd, &format)
	return cmd
}

// readPeering reads one peering; a 404 is an error saying so, in Consul's
// words.
func readPeering(cmd *cobra.Command, a *app, name string) (*Response, *peeringObject, error) {
	c, err := a.client()
	if err != nil {
		return nil, nil, err
	}
	resp, err := c.Get(cmd.Context(), peeringPath(name), nil)
	var se *StatusError
	if errors.As(err, &se) && se.StatusCode == http.StatusNotFound {
		//lint:ignore ST1005 Consul prints it capitalised; scripts match on it
		return nil, nil, fmt.Errorf("No peering with name %s found.", name)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read peering %s: %w", name, err)
	}
	var p peeringObject
	if err := resp.Decode(&p); err != nil {
		return nil, nil, fmt.Errorf("read peering %s: %w", name, err)
	}
	return resp, &p, nil
}

func newPeeringReadCommand(a *app) *cobra.Command {
	var name, format string
	cmd := &cobra.Command{
		Use:   "read -name NAME",
		Short: "Show one peering connection in detail",
		Long: `Show a peering connection (GET /v1/peering/<name>): its state, the peer's
identity and addresses, the services exchanged and the stream's status.`,
		Example: `  peerctl peering read -name cluster-02
  peerctl peering read -name cluster-02 -format json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(cmd, &format); err != nil {
				return err
			}
			if err := requireFlags(cmd, "name"); err != nil {
				return err
			}
			resp, p, err := readPeering(cmd, a, name)
			if err != nil {
				return err
			}
			if format == formatJSON {
				return printJSON(cmd.OutOrStdout(), resp.Body)
			}
			_, err = io.WriteString(cmd.OutOrStdout(), formatPeering(p))
			return err
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "local name of the peer")
	addPeeringFormatFlag(cmd, &format)
	return cmd
}

// formatPeering lays a peering out as consul peering read does, with
// peerd's last error and replication lag added.
func formatPeering(p *peeringObject) string {
	var b strings.Builder
	line := func(label, value string) { fmt.Fprintf(&b, "%-23s%s\n", label+":", value) }
	when := func(t *time.Time) string {
		if t == nil {
			return "never"
		}
		return t.Local().Format(time.RFC3339)
	}
	line("Name", p.Name)
	line("ID", p.ID)
	if p.Partition != "" {
		line("Partition", p.Partition)
	}
	if p.DeletedAt != nil {
		line("DeletedAt", p.DeletedAt.Local().Format(time.RFC3339))
	}
	line("State", p.State)
	if len(p.Meta) > 0 {
		b.WriteString("Meta:\n")
		for _, kv := range strings.Split(formatMeta(p.Meta, "\n"), "\n") {
			fmt.Fprintf(&b, "    %s\n", kv)
		}
	}
	b.WriteString("\n")
	line("Peer ID", p.PeerID)
	line("Peer Server Name", p.PeerServerName)
	if p.PeerTrustDomain != "" {
		line("Peer Trust Domain", p.PeerTrustDomain)
	}
	line("Peer CA Pems", fmt.Sprint(len(p.PeerCAPems)))
	if len(p.PeerServerAddresses) > 0 {
		b.WriteString("Peer Server Addresses:\n")
		for _, addr := range p.PeerServerAddresses {
			fmt.Fprintf(&b, "    %s\n", addr)
		}
	}
	if p.Remote.Datacenter != "" {
		line("Peer Datacenter", p.Remote.Datacenter)
	}
	b.WriteString("\n")
	line("Imported Services", fmt.Sprint(len(p.StreamStatus.ImportedServices)))
	line("Exported Services", fmt.Sprint(len(p.StreamStatus.ExportedServices)))
	b.WriteString("\n")
	line("Last Heartbeat", when(p.StreamStatus.LastHeartbeat))
	line("Last Send", when(p.StreamStatus.LastSend))
	line("Last Receive", when(p.StreamStatus.LastReceive))
	if p.LastError != "" {
		line("Last Error", p.LastError)
	}
	line("Replication Lag", (time.Duration(p.ReplicationLagMs) * time.Millisecond).String())
	if len(p.QuotaRefusals) > 0 || len(p.ImportRefusals) > 0 {
		b.WriteString("\n")
		for _, group := range []struct {
			title  string
			counts map[string]uint64
		}{{"Quota Refusals", p.QuotaRefusals}, {"Import Refusals", p.ImportRefusals}} {
			if len(group.counts) == 0 {
				continue
			}
			b.WriteString(group.title + ":\n")
			for _, k := range slices.Sorted(maps.Keys(group.counts)) {
				fmt.Fprintf(&b, "    %s = %d\n", k, group.counts[k])
			}
		}
		line("Last Refusal", p.LastRefusal)
		line("Last Refusal At", when(p.LastRefusalAt))
	}
	if ss := p.StreamSecret; ss != nil {
		bound := "no (the secret alone opens the stream)"
		if ss.BoundTrustDomain != "" {
			bound = ss.BoundTrustDomain
		}
		line("Secret Bound To", bound)
		line("Secret Active Since", when(ss.ActiveSince))
		if ss.RotationPending {
			line("Secret Rotation", "pending (waiting for the peer)")
		}
	}
	b.WriteString("\n")
	line("Create Index", fmt.Sprint(p.CreateIndex))
	line("Modify Index", fmt.Sprint(p.ModifyIndex))
	return b.String()
}

func newPeeringDeleteCommand(a *app) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "delete -name NAME",
		Short: "Delete a peering connection",
		Long: `Delete a peering connection (DELETE /v1/peering/<name>). The deletion is
asynchronous: the peering shows as DELETING while the peer is told and the
services imported from it are removed, then it disappears. The peer sees
the peering as TERMINATED.`,
		Example: `  peerctl peering delete -name cluster-02`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlags(cmd, "name"); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if _, err := c.Delete(cmd.Context(), peeringPath(name), nil); err != nil {
				return fmt.Errorf("delete peering %s: %w", name, err)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "Successfully submitted peering connection, %s, for deletion\n", name)
			return err
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "local name of the peer")
	return cmd
}

func newPeeringRotateSecretCommand(a *app) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "rotate-secret -name NAME",
		Short: "Rotate a peering's stream secret",
		Long: `Rotate the stream secret of the peering NAME (POST
/v1/peering/<name>/rotate-secret). Run it in the cluster that generated the
peering token (the acceptor), which owns the secrets. The new secret is
handed to the peer over the open stream and replaces the old one once the
peer stored it; the stream stays open, and the old secret stops working.
Secrets also rotate on a schedule (peering { stream_secret_rotation }).`,
		Example: `  peerctl peering rotate-secret -name cluster-01`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlags(cmd, "name"); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if _, err := c.Post(cmd.Context(), peeringPath(name)+"/rotate-secret", nil, nil); err != nil {
				return fmt.Errorf("rotate the stream secret of peering %s: %w", name, err)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "Rotating the stream secret of peering %s: the peer takes the new one over the open stream\n", name)
			return err
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "local name of the peer")
	return cmd
}

func newPeeringExportedServicesCommand(a *app) *cobra.Command {
	var name, format string
	cmd := &cobra.Command{
		Use:   "exported-services -name NAME",
		Short: "List the services exported to a peer",
		Long:  `List the services this cluster exports to the peer NAME, one per line.`,
		Example: `  peerctl peering exported-services -name cluster-02
  peerctl peering exported-services -name cluster-02 -format json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(cmd, &format); err != nil {
				return err
			}
			if err := requireFlags(cmd, "name"); err != nil {
				return err
			}
			_, p, err := readPeering(cmd, a, name)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			services := p.StreamStatus.ExportedServices
			if services == nil {
				services = []string{}
			}
			if format == formatJSON {
				return printJSON(out, services)
			}
			if len(services) == 0 {
				_, err := fmt.Fprintf(out, "No services are exported to %s.\n", name)
				return err
			}
			rows := make([][]string, len(services))
			for i, s := range services {
				rows[i] = []string{s}
			}
			return printTable(out, nil, rows)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "local name of the peer")
	addPeeringFormatFlag(cmd, &format)
	return cmd
}
