package cli

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func newSnapshotCommand(a *app) *cobra.Command {
	return newGroupCommand("snapshot", "Save, restore and inspect snapshots of the replicated state",
		newSnapshotSaveCommand(a),
		newSnapshotRestoreCommand(a),
		newSnapshotInspectCommand(),
	)
}

func newSnapshotSaveCommand(a *app) *cobra.Command {
	var stale bool
	cmd := &cobra.Command{
		Use:     "save [flags] FILE",
		Short:   "Save the cluster's replicated state to FILE (GET /v1/snapshot)",
		Example: "  peerctl snapshot save backup.snap",
		Args:    exactArgs(1, "the file to write the snapshot to"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			q := map[string][]string{}
			if stale {
				q["stale"] = []string{""}
			}
			resp, err := c.Get(cmd.Context(), "/v1/snapshot", q)
			if err != nil {
				return fmt.Errorf("save snapshot: %w", err)
			}
			if err := os.WriteFile(args[0], resp.Body, 0o600); err != nil {
				return fmt.Errorf("save snapshot: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Saved and verified snapshot to index %d\n", resp.Index)
			return nil
		},
	}
	cmd.Flags().BoolVar(&stale, "stale", false, "let any server answer, not only the leader")
	return cmd
}

func newSnapshotRestoreCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "restore FILE",
		Short: "Replace the cluster's replicated state with a snapshot (PUT /v1/snapshot)",
		Long: `Replace the cluster's replicated state with a snapshot made by 'peerctl snapshot save'.
This is for disaster recovery: every write made after the snapshot is lost.`,
		Example: "  peerctl snapshot restore backup.snap",
		Args:    exactArgs(1, "the snapshot file to restore"),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := os.ReadFile(args[0])
			if err != nil {
				return fmt.Errorf("restore snapshot: %w", err)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if _, err := c.Put(cmd.Context(), "/v1/snapshot", nil, b); err != nil {
				return fmt.Errorf("restore snapshot: %w", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "Restored snapshot")
			return nil
		},
	}
}

func newSnapshotInspectCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "inspect [flags] FILE",
		Short:   "Show a snapshot file's header",
		Example: "  peerctl snapshot inspect backup.snap",
		Args:    exactArgs(1, "the snapshot file to inspect"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(cmd, &format); err != nil {
				return err
			}
			f, err := os.Open(args[0])
			if err != nil {
				return fmt.Errorf("inspect snapshot: %w", err)
			}
			defer f.Close()
			zr, err := gzip.NewReader(f)
			if err != nil {
				return fmt.Errorf("inspect snapshot %s: not a peerd snapshot: %w", args[0], err)
			}
			line, err := bufio.NewReader(zr).ReadBytes('\n')
			if err != nil {
				return fmt.Errorf("inspect snapshot %s: read header: %w", args[0], err)
			}
			var h struct {
				Format, Datacenter, Created string
				Index                       uint64
			}
			if err := json.Unmarshal(line, &h); err != nil {
				return fmt.Errorf("inspect snapshot %s: bad header: %w", args[0], err)
			}
			if format == "json" {
				return printJSON(cmd.OutOrStdout(), h)
			}
			return printTable(cmd.OutOrStdout(), []string{"Format", "Datacenter", "Index", "Created"},
				[][]string{{h.Format, h.Datacenter, fmt.Sprint(h.Index), h.Created}})
		},
	}
	addFormatFlag(cmd, &format)
	return cmd
}
