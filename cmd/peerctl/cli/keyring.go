package cli

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	"github.com/spf13/cobra"
)

func newKeyringCommand(a *app) *cobra.Command {
	return newGroupCommand("keyring", "List and rotate the gossip encryption keys (/v1/operator/keyring)",
		newKeyringListCommand(a),
		newKeyringChangeCommand(a, "install", http.MethodPost, "Installed the key on %d nodes\n", "Install a new gossip key on every node",
			`Add KEY to the keyring of every live node (POST /v1/operator/keyring). Nodes
then decrypt gossip with it but still encrypt with the primary key. Generate
KEY with peerd keygen. Step 1 of a rotation: install, use, remove.`),
		newKeyringChangeCommand(a, "use", http.MethodPut, "Made the key primary on %d nodes\n", "Make an installed key the primary key on every node",
			`Make KEY, installed on every node first, the key every live node encrypts
gossip with (PUT /v1/operator/keyring). Step 2 of a rotation.`),
		newKeyringChangeCommand(a, "remove", http.MethodDelete, "Removed the key from %d nodes\n", "Remove a gossip key from every node",
			`Remove KEY from the keyring of every live node (DELETE /v1/operator/keyring).
The primary key cannot be removed: make another key primary first. Step 3
of a rotation; nodes that still hold only KEY can no longer join.`),
	)
}

// keyringResponse is one pool of GET /v1/operator/keyring, the fields shown.
type keyringResponse struct {
	WAN         bool
	Datacenter  string
	Messages    map[string]string
	Keys        map[string]int
	PrimaryKeys map[string]int
	NumNodes    int
}

func newKeyringListCommand(a *app) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the gossip keys and how many nodes hold each",
		Long: `List the gossip encryption keys of every live node (GET /v1/operator/keyring):
each key, whether it is the primary key (the one gossip is encrypted with),
and on how many of the nodes that answered it is installed. Nodes that did
not answer are listed with their error.`,
		Example: `  peerctl keyring list
  peerctl keyring list -format json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := a.list(cmd, format, "list gossip keys", "/v1/operator/keyring", nil)
			if err != nil || resp == nil {
				return err
			}
			var pools []keyringResponse
			if err := resp.Decode(&pools); err != nil {
				return fmt.Errorf("list gossip keys: %w", err)
			}
			return printKeyrings(cmd.OutOrStdout(), pools)
		},
	}
	addFormatFlag(cmd, &format)
	return cmd
}

// printKeyrings prints each pool's keys, the primary first, then the nodes
// that failed.
func printKeyrings(w io.Writer, pools []keyringResponse) error {
	for i, p := range pools {
		if i > 0 {
			fmt.Fprintln(w)
		}
		pool := "LAN"
		if p.WAN {
			pool = "WAN"
		}
		fmt.Fprintf(w, "%s pool of %s: %d nodes\n", pool, p.Datacenter, p.NumNodes)
		keys := make([]string, 0, len(p.Keys))
		for k := range p.Keys {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool {
			if pi, pj := p.PrimaryKeys[keys[i]], p.PrimaryKeys[keys[j]]; pi != pj {
				return pi > pj
			}
			return keys[i] < keys[j]
		})
		rows := [][]string{}
		for _, k := range keys {
			primary := "no"
			switch n := p.PrimaryKeys[k]; {
			case n == p.NumNodes:
				primary = "yes"
			case n > 0:
				primary = fmt.Sprintf("on %d/%d", n, p.NumNodes)
			}
			rows = append(rows, []string{k, primary, fmt.Sprintf("%d/%d", p.Keys[k], p.NumNodes)})
		}
		if err := printTable(w, []string{"Key", "Primary", "Installed"}, rows); err != nil {
			return err
		}
		if len(p.Messages) > 0 {
			fmt.Fprintln(w)
			nodes := make([]string, 0, len(p.Messages))
			for n := range p.Messages {
				nodes = append(nodes, n)
			}
			sort.Strings(nodes)
			rows := [][]string{}
			for _, n := range nodes {
				rows = append(rows, []string{n, p.Messages[n]})
			}
			if err := printTable(w, []string{"Node", "Error"}, rows); err != nil {
				return err
			}
		}
	}
	return nil
}

// newKeyringChangeCommand is install, use or remove: method on
// /v1/operator/keyring with {"Key": KEY}; done is the Printf format of the
// line printed on success, given the number of nodes.
func newKeyringChangeCommand(a *app, use, method, done, short, long string) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     use + " KEY",
		Short:   short,
		Long:    long,
		Example: "  peerctl keyring " + use + " \"$(cat new-gossip.key)\"",
		Args:    exactArgs(1, "the base64 gossip key (peerd keygen)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(cmd, &format); err != nil {
				return err
			}
			key := strings.TrimSpace(args[0])
			c, err := a.client()
			if err != nil {
				return err
			}
			resp, err := c.Do(cmd.Context(), method, "/v1/operator/keyring", nil, map[string]string{"Key": key})
			if err != nil {
				return fmt.Errorf("%s the gossip key: %w", use, err)
			}
			if format == formatJSON {
				return printJSON(cmd.OutOrStdout(), resp.Body)
			}
			var pools []keyringResponse
			if err := resp.Decode(&pools); err != nil {
				return fmt.Errorf("%s the gossip key: %w", use, err)
			}
			for _, p := range pools {
				fmt.Fprintf(cmd.OutOrStdout(), done, p.NumNodes)
			}
			return nil
		},
	}
	addFormatFlag(cmd, &format)
	return cmd
}
