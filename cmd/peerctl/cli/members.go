package cli

import (
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

// agentMember is one entry of GET /v1/agent/members, the fields peerctl
// shows. The JSON output passes the agent's answer through untouched.
type agentMember struct {
	Name   string
	Addr   string
	Port   uint16
	Tags   map[string]string
	Status int
}

// memberStatusName is serf's name for a member status number.
func memberStatusName(s int) string {
	switch s {
	case 0:
		return "none"
	case 1:
		return "alive"
	case 2:
		return "leaving"
	case 3:
		return "left"
	case 4:
		return "failed"
	}
	return "unknown(" + strconv.Itoa(s) + ")"
}

// memberType is the Type column: peerd tags role=server|client, Consul
// role=consul|node; both are understood.
func memberType(tags map[string]string) string {
	switch tags["role"] {
	case "server", "consul":
		return "server"
	case "client", "node":
		return "client"
	}
	return "unknown"
}

func newMembersCommand(a *app) *cobra.Command {
	var (
		format   string
		status   string
		detailed bool
	)
	cmd := &cobra.Command{
		Use:   "members",
		Short: "List the members of the cluster",
		Long: `List the members of the cluster as the agent's gossip pool sees them
(GET /v1/agent/members).`,
		Example: `  peerctl members
  peerctl members -status 'alive|leaving'
  peerctl members -format json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(cmd, &format); err != nil {
				return err
			}
			statusRe, err := regexp.Compile(status)
			if err != nil {
				return usageErrorf(cmd, "invalid -status regular expression: %v", err)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			resp, err := c.Get(cmd.Context(), "/v1/agent/members", nil)
			if err != nil {
				return fmt.Errorf("list members: %w", err)
			}
			var raws []json.RawMessage
			if err := resp.Decode(&raws); err != nil {
				return fmt.Errorf("list members: %w", err)
			}
			type entry struct {
				m   agentMember
				raw json.RawMessage
			}
			var kept []entry
			for _, raw := range raws {
				var m agentMember
				if err := json.Unmarshal(raw, &m); err != nil {
					return fmt.Errorf("list members: decode member: %w", err)
				}
				if statusRe.MatchString(memberStatusName(m.Status)) {
					kept = append(kept, entry{m, raw})
				}
			}

			out := cmd.OutOrStdout()
			if format == formatJSON {
				list := make([]json.RawMessage, len(kept))
				for i, e := range kept {
					list[i] = e.raw
				}
				return printJSON(out, list)
			}
			members := make([]agentMember, len(kept))
			for i, e := range kept {
				members[i] = e.m
			}
			sortMembers(members)
			if detailed {
				return printTable(out, []string{"Node", "Address", "Status", "Tags"}, detailedMemberRows(members))
			}
			return printTable(out, []string{"Node", "Address", "Status", "Type", "Build", "Protocol", "DC"}, memberRows(members))
		},
	}
	cmd.Flags().StringVar(&status, "status", ".*", "show only members whose status (alive, leaving, left, failed) matches this regular expression")
	cmd.Flags().BoolVar(&detailed, "detailed", false, "show every tag instead of the usual columns")
	addFormatFlag(cmd, &format)
	return cmd
}

// sortMembers puts servers first, then sorts by name, as consul members
// does.
func sortMembers(ms []agentMember) {
	sort.SliceStable(ms, func(i, j int) bool {
		si, sj := memberType(ms[i].Tags) == "server", memberType(ms[j].Tags) == "server"
		if si != sj {
			return si
		}
		return ms[i].Name < ms[j].Name
	})
}

func memberRows(ms []agentMember) [][]string {
	rows := make([][]string, 0, len(ms))
	for _, m := range ms {
		build, _, _ := strings.Cut(m.Tags["build"], ":")
		rows = append(rows, []string{
			m.Name,
			net.JoinHostPort(m.Addr, strconv.Itoa(int(m.Port))),
			memberStatusName(m.Status),
			memberType(m.Tags),
			build,
			m.Tags["vsn"],
			m.Tags["dc"],
		})
	}
	return rows
}

func detailedMemberRows(ms []agentMember) [][]string {
	rows := make([][]string, 0, len(ms))
	for _, m := range ms {
		rows = append(rows, []string{
			m.Name,
			net.JoinHostPort(m.Addr, strconv.Itoa(int(m.Port))),
			memberStatusName(m.Status),
			joinPairs(m.Tags, ","),
		})
	}
	return rows
}

// joinPairs formats m as k1=v1<sep>k2=v2 sorted by key.
func joinPairs(m map[string]string, sep string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(sep)
		}
		b.WriteString(k + "=" + m[k])
	}
	return b.String()
}
