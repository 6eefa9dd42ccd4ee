package cli

import (
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/spf13/cobra"
)

func newOperatorCommand(a *app) *cobra.Command {
	return newGroupCommand("operator", "Inspect and manage the servers' raft membership",
		newGroupCommand("raft", "The raft configuration of the servers",
			newRaftListPeersCommand(a), newRaftRemovePeerCommand(a)),
		newGroupCommand("autopilot", "The leader's server health and promotion",
			newAutopilotStateCommand(a)))
}

type raftPeer struct {
	ID, Node, Address string
	Leader, Voter     bool
	LastIndex         uint64
}

func newRaftListPeersCommand(a *app) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "list-peers",
		Short: "List the servers of the raft configuration (GET /v1/operator/raft/configuration)",
		Long: `List the servers of the raft configuration: their state (leader, follower),
whether they vote, and their last raft index (known to the leader). A server
added after bootstrap is a non-voter until autopilot promotes it.`,
		Example: `  peerctl operator raft list-peers
  peerctl operator raft list-peers -format json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := a.list(cmd, format, "list raft peers", "/v1/operator/raft/configuration", nil)
			if err != nil || resp == nil {
				return err
			}
			var conf struct{ Servers []raftPeer }
			if err := resp.Decode(&conf); err != nil {
				return fmt.Errorf("list raft peers: %w", err)
			}
			rows := [][]string{}
			for _, s := range conf.Servers {
				st := "follower"
				if s.Leader {
					st = "leader"
				}
				rows = append(rows, []string{s.Node, s.ID, s.Address, st, fmt.Sprint(s.Voter), "3", fmt.Sprint(s.LastIndex)})
			}
			return printTable(cmd.OutOrStdout(), []string{"Node", "ID", "Address", "State", "Voter", "RaftProtocol", "LastIndex"}, rows)
		},
	}
	addFormatFlag(cmd, &format)
	return cmd
}

func newRaftRemovePeerCommand(a *app) *cobra.Command {
	var id string
	cmd := &cobra.Command{
		Use:   "remove-peer",
		Short: "Remove a server from the raft configuration (DELETE /v1/operator/raft/peer)",
		Long: `Remove a server from the raft configuration by hand, by its ID (the node
name, see list-peers). The leader refuses to remove itself and to remove a
voter when the healthy voters left would have no quorum. A server that is
still alive in gossip is added back as a non-voter.`,
		Example: `  peerctl operator raft remove-peer -id s4`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if id == "" {
				return usageErrorf(cmd, "missing -id: the server's ID (see peerctl operator raft list-peers)")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if _, err := c.Delete(cmd.Context(), "/v1/operator/raft/peer", url.Values{"id": {id}}); err != nil {
				return fmt.Errorf("remove raft peer %s: %w", id, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Removed peer with id %q\n", id)
			return nil
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "ID of the server to remove")
	return cmd
}

type autopilotServer struct {
	ID, Name, Address, NodeStatus, LastContact, Status string
	LastTerm, LastIndex                                uint64
	Healthy                                            bool
	StableSince                                        string
}

func newAutopilotStateCommand(a *app) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "state",
		Short: "Show the leader's view of the servers' health (GET /v1/operator/autopilot/state)",
		Long: `Show the leader's last autopilot pass: whether the cluster is healthy, how
many voters it can lose, and each server's health. A new server is promoted
from non-voter to voter after it has been healthy for the stabilization
time; a failed one is removed after the dead server reap time.`,
		Example: `  peerctl operator autopilot state
  peerctl operator autopilot state -format json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := a.list(cmd, format, "read the autopilot state", "/v1/operator/autopilot/state", nil)
			if err != nil || resp == nil {
				return err
			}
			var st struct {
				Healthy                    bool
				FailureTolerance           int
				OptimisticFailureTolerance int
				Leader                     string
				Voters                     []string
				Servers                    map[string]autopilotServer
			}
			if err := resp.Decode(&st); err != nil {
				return fmt.Errorf("read the autopilot state: %w", err)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "Healthy: %v\nFailure tolerance: %d\nOptimistic failure tolerance: %d\nLeader: %s\nVoters: %s\n\n",
				st.Healthy, st.FailureTolerance, st.OptimisticFailureTolerance, st.Leader, strings.Join(st.Voters, ", "))
			ids := make([]string, 0, len(st.Servers))
			for id := range st.Servers {
				ids = append(ids, id)
			}
			slices.Sort(ids)
			rows := [][]string{}
			for _, id := range ids {
				s := st.Servers[id]
				rows = append(rows, []string{s.Name, s.Address, s.Status, s.NodeStatus, fmt.Sprint(s.Healthy),
					s.LastContact, fmt.Sprint(s.LastTerm), fmt.Sprint(s.LastIndex), s.StableSince})
			}
			return printTable(w, []string{"Name", "Address", "Status", "Gossip", "Healthy", "LastContact", "LastTerm", "LastIndex", "StableSince"}, rows)
		},
	}
	addFormatFlag(cmd, &format)
	return cmd
}
