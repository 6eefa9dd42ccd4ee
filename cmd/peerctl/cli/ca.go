package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func newCACommand(a *app) *cobra.Command {
	return newGroupCommand("ca", "Inspect and rotate the cluster's built-in CA",
		newCARootsCommand(a), newCARotateCommand(a))
}

// caRoot is one root of GET /v1/connect/ca/roots, the fields shown.
type caRoot struct {
	ID                string
	Active            bool
	NotBefore         time.Time
	NotAfter          time.Time
	IntermediateCerts []string
	RootCert          string
}

func newCARootsCommand(a *app) *cobra.Command {
	var format string
	var pemOut bool
	cmd := &cobra.Command{
		Use:   "roots",
		Short: "List the CA roots (GET /v1/connect/ca/roots)",
		Long: `List this cluster's CA roots, the active one first. After a rotation the
previous root stays listed (inactive) so that leaves it signed keep
verifying; the trust domain is the cluster's SPIFFE trust domain.

-pem prints the roots' certificates alone: the CA file that verifies an
HTTPS API certificate from the cluster CA (peerctl -ca-file, CONSUL_CACERT).`,
		Example: `  peerctl ca roots
  peerctl ca roots -format json
  peerctl ca roots -pem > peerd-ca.pem`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := a.list(cmd, format, "list CA roots", "/v1/connect/ca/roots", nil)
			if err != nil || resp == nil {
				return err
			}
			var list struct {
				TrustDomain string
				Roots       []caRoot
			}
			if err := resp.Decode(&list); err != nil {
				return fmt.Errorf("list CA roots: %w", err)
			}
			if pemOut {
				for _, r := range list.Roots {
					if _, err := io.WriteString(cmd.OutOrStdout(), strings.TrimRight(r.RootCert, "\n")+"\n"); err != nil {
						return err
					}
				}
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Trust domain: %s\n\n", list.TrustDomain)
			rows := [][]string{}
			for _, r := range list.Roots {
				cross := "no"
				if len(r.IntermediateCerts) > 0 {
					cross = "yes"
				}
				rows = append(rows, []string{r.ID, fmt.Sprint(r.Active), r.NotBefore.Format(time.RFC3339), r.NotAfter.Format(time.RFC3339), cross})
			}
			return printTable(cmd.OutOrStdout(), []string{"ID", "Active", "Not before", "Not after", "Cross-signed"}, rows)
		},
	}
	addFormatFlag(cmd, &format)
	cmd.Flags().BoolVar(&pemOut, "pem", false, "print the roots' PEM certificates only (a CA file for -ca-file)")
	return cmd
}

func newCARotateCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Replace the active CA root with a new, cross-signed one",
		Long: `Create a new CA root, cross-signed by the active one, and make it active
(POST /v1/connect/ca/rotate). Every node's terminator re-signs its leaves
within seconds; peers receive the new root in the trust bundle. Leaves of
the old root keep verifying through the cross-signed certificate, so
traffic does not fail during the rotation.`,
		Example: `  peerctl ca rotate`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			resp, err := c.Post(cmd.Context(), "/v1/connect/ca/rotate", nil, nil)
			if err != nil {
				return fmt.Errorf("rotate the CA: %w", err)
			}
			var out struct{ ActiveRootID string }
			if err := resp.Decode(&out); err != nil {
				return fmt.Errorf("rotate the CA: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "New active root: %s\n", out.ActiveRootID)
			return nil
		},
	}
	return cmd
}
