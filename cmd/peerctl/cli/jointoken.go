package cli

import (
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/spf13/cobra"
)

// newJoinTokenCommand is `join-token` (also run as `peerd join-token`).
func newJoinTokenCommand(a *app) *cobra.Command {
	return newGroupCommand("join-token", "Create, list and revoke the join tokens that admit new nodes",
		newJoinTokenCreateCommand(a), newJoinTokenListCommand(a), newJoinTokenRevokeCommand(a))
}

// joinToken is one token of /v1/operator/join-token*, the fields shown.
type joinToken struct {
	ID          string
	Token       string
	Role        string
	Description string
	Status      string
	CreatedAt   time.Time
	ExpiresAt   time.Time
	Uses        int
}

func newJoinTokenCreateCommand(a *app) *cobra.Command {
	var role, description, format, out string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a join token for a new server or client node",
		Long: `Create a join token on a server (POST /v1/operator/join-token). The token
admits nodes of one role until it expires or is revoked; it pins the
cluster's CA, lists the servers to contact and carries the gossip key, so
a new node needs only:

  peerd agent -join-token <token> ...   (or -join-token-file FILE)

The token is shown once: the servers keep only a hash of its secret.
Treat it as a password.`,
		Example: `  peerctl join-token create -role client -ttl 24h
  peerctl join-token create -role server -description "s2 in rack 4" -out server.token`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(cmd, &format); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			resp, err := c.Post(cmd.Context(), "/v1/operator/join-token", nil, map[string]string{
				"Role": role, "TTL": ttl.String(), "Description": description,
			})
			if err != nil {
				return fmt.Errorf("create a join token: %w", err)
			}
			if format == formatJSON {
				return printJSON(cmd.OutOrStdout(), resp.Body)
			}
			var tok joinToken
			if err := resp.Decode(&tok); err != nil {
				return fmt.Errorf("create a join token: %w", err)
			}
			if out != "" {
				if err := os.WriteFile(out, []byte(tok.Token+"\n"), 0o600); err != nil {
					return fmt.Errorf("create a join token: %w", err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Join token %s (%s, expires %s) written to %s (mode 0600)\nStart the new node with: peerd agent -join-token-file %s ...\n",
					tok.ID, tok.Role, tok.ExpiresAt.Format(time.RFC3339), out, out)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Join token %s (%s, expires %s):\n\n%s\n\nStart the new node with: peerd agent -join-token <token> ...\n",
				tok.ID, tok.Role, tok.ExpiresAt.Format(time.RFC3339), tok.Token)
			return nil
		},
	}
	cmd.Flags().StringVar(&role, "role", "client", "role the token grants: server or client")
	cmd.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token admits nodes")
	cmd.Flags().StringVar(&description, "description", "", "what the token is for (shown by list)")
	cmd.Flags().StringVar(&out, "out", "", "write the token to this file (mode 0600) instead of the terminal")
	addFormatFlag(cmd, &format)
	return cmd
}

func newJoinTokenListCommand(a *app) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List the join tokens (GET /v1/operator/join-tokens)",
		Long:    `List every join token with its role, status (valid, expired, revoked) and the nodes it admitted. Secrets are never shown: the servers keep none.`,
		Example: "  peerctl join-token list\n  peerctl join-token list -format json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := a.list(cmd, format, "list join tokens", "/v1/operator/join-tokens", nil)
			if err != nil || resp == nil {
				return err
			}
			var list []joinToken
			if err := resp.Decode(&list); err != nil {
				return fmt.Errorf("list join tokens: %w", err)
			}
			rows := [][]string{}
			for _, t := range list {
				rows = append(rows, []string{t.ID, t.Role, t.Status, t.ExpiresAt.Format(time.RFC3339), fmt.Sprint(t.Uses), t.Description})
			}
			return printTable(cmd.OutOrStdout(), []string{"ID", "Role", "Status", "Expires", "Uses", "Description"}, rows)
		},
	}
	addFormatFlag(cmd, &format)
	return cmd
}

func newJoinTokenRevokeCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke <id>",
		Short: "Revoke a join token: it admits no node any more",
		Long: `Revoke a join token (DELETE /v1/operator/join-token/<id>). Nodes it already
admitted keep their certificates; the token admits no one more.`,
		Example: "  peerctl join-token revoke 3f9c0a1b2c3d4e5f",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if _, err := c.Delete(cmd.Context(), "/v1/operator/join-token/"+url.PathEscape(args[0]), nil); err != nil {
				return fmt.Errorf("revoke join token %s: %w", args[0], err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Revoked join token %s\n", args[0])
			return nil
		},
	}
}

// newNodeCommand is `node`: operations on one admitted node.
func newNodeCommand(a *app) *cobra.Command {
	revoke := &cobra.Command{
		Use:   "revoke <node>",
		Short: "Revoke a node's certificate: it is cut off from the cluster",
		Long: `Revoke every certificate of a node signed so far (POST
/v1/operator/revoke-node/<node>, on a server). The node's handshakes on raft,
the internal port and the node hop are refused from then on, its calls on
connections already open too, and its streams end within a second. To let
the node back, admit it again with a new join token.`,
		Example: "  peerctl node revoke web-7",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if _, err := c.Post(cmd.Context(), "/v1/operator/revoke-node/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return fmt.Errorf("revoke node %s: %w", args[0], err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Revoked the certificates of node %s\n", args[0])
			return nil
		},
	}
	return newGroupCommand("node", "Operate on one admitted node", revoke)
}
