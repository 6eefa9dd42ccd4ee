package cli

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

func newDataplaneCommand(a *app) *cobra.Command {
	return newGroupCommand("dataplane", "Inspect this node's eBPF dataplane", newDataplaneStatusCommand(a))
}

// layerStatus is one layer of GET /v1/agent/dataplane.
type layerStatus struct {
	Enabled    bool
	Loaded     bool
	Reused     bool
	AttachMode string
	Reason     string
	Maps       map[string]int
	Counters   map[string]uint64
	Interfaces map[string]string
	Routes     []string
}

// workloadNamespace is one entry of GET /v1/agent/dataplane's Workloads.
type workloadNamespace struct {
	Cookie    uint64
	Inode     uint64
	PID       int
	Cgroup    string
	Owner     string
	Ready     bool
	IPv6      bool
	Listeners []string
	Failing   map[string]string
}

func newDataplaneStatusCommand(a *app) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show each eBPF layer: loaded, attach mode, reason if off, maps, counters",
		Long: `Show the agent's eBPF dataplane (GET /v1/agent/dataplane): for each layer
(capture, fastpath, tc, inbound) whether it is enabled and loaded, how it is
attached (cgroup link, TCX or clsact), why it is off, the kernel version,
map occupancy, the programs' counters and the capture layer's unreachable
routes for the virtual IP ranges; then the workload network namespaces peerd
has listeners in (containers, pods): the namespace's cookie and inode, a
process in it, the service that owns it, whether the dataplane captures its
connects (ready), and its listeners.`,
		Example: `  peerctl dataplane status
  peerctl dataplane status -format json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := a.list(cmd, format, "read the dataplane status", "/v1/agent/dataplane", nil)
			if err != nil || resp == nil {
				return err
			}
			var out struct {
				Enabled bool
				Status  struct {
					Kernel   string
					PinDir   string
					Capture  layerStatus
					FastPath layerStatus
					TC       layerStatus
					Inbound  layerStatus
				}
				Workloads *[]workloadNamespace
			}
			if err := resp.Decode(&out); err != nil {
				return fmt.Errorf("read the dataplane status: %w", err)
			}
			w := cmd.OutOrStdout()
			if !out.Enabled {
				fmt.Fprintln(w, "No eBPF dataplane on this node (start the agent with -cgroup-path or -dataplane-interface).")
				return nil
			}
			st := out.Status
			fmt.Fprintf(w, "Kernel: %s   Pins: %s\n\n", st.Kernel, st.PinDir)
			layers := []struct {
				name string
				l    layerStatus
			}{{"capture", st.Capture}, {"fastpath", st.FastPath}, {"tc", st.TC}, {"inbound", st.Inbound}}
			rows := [][]string{}
			for _, x := range layers {
				state := "off"
				switch {
				case x.l.Loaded && x.l.Reused:
					state = "loaded (reused pins)"
				case x.l.Loaded:
					state = "loaded"
				case x.l.Enabled:
					state = "OFF"
				}
				rows = append(rows, []string{x.name, strconv.FormatBool(x.l.Enabled), state, x.l.AttachMode, x.l.Reason})
			}
			if err := printTable(w, []string{"Layer", "Enabled", "State", "Attach", "Reason"}, rows); err != nil {
				return err
			}
			detail := [][]string{}
			for _, x := range layers {
				for _, k := range sortedKeys(x.l.Maps) {
					detail = append(detail, []string{x.name, "map " + k, strconv.Itoa(x.l.Maps[k])})
				}
				for _, k := range sortedKeys(x.l.Counters) {
					detail = append(detail, []string{x.name, k, strconv.FormatUint(x.l.Counters[k], 10)})
				}
				for _, k := range sortedKeys(x.l.Interfaces) {
					detail = append(detail, []string{x.name, "interface " + k, x.l.Interfaces[k]})
				}
				for _, r := range x.l.Routes {
					detail = append(detail, []string{x.name, "route", r})
				}
			}
			if len(detail) > 0 {
				fmt.Fprintln(w)
				if err := printTable(w, []string{"Layer", "Map / counter", "Value"}, detail); err != nil {
					return err
				}
			}
			if out.Workloads != nil {
				return printWorkloads(w, *out.Workloads)
			}
			return nil
		},
	}
	addFormatFlag(cmd, &format)
	return cmd
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// printWorkloads prints the workload namespaces table (and the listeners
// that fail to open, one line each).
func printWorkloads(w io.Writer, nss []workloadNamespace) error {
	fmt.Fprintln(w)
	if len(nss) == 0 {
		fmt.Fprintln(w, "Workload namespaces: none (no process under the captured cgroup runs in a network namespace of its own).")
		return nil
	}
	rows := [][]string{}
	var failing [][]string
	for _, ns := range nss {
		ready := "no"
		if ns.Ready {
			ready = "yes"
		}
		owner := ns.Owner
		if owner == "" {
			owner = "-"
		}
		listeners := strings.Join(ns.Listeners, ", ")
		if !ns.IPv6 {
			listeners = strings.TrimSpace(listeners + " (IPv4 only)")
		}
		rows = append(rows, []string{strconv.FormatUint(ns.Cookie, 10), strconv.FormatUint(ns.Inode, 10), strconv.Itoa(ns.PID), owner, ready, listeners})
		for _, k := range sortedKeys(ns.Failing) {
			failing = append(failing, []string{strconv.FormatUint(ns.Cookie, 10), k, ns.Failing[k]})
		}
	}
	if err := printTable(w, []string{"Netns cookie", "Inode", "PID", "Owner", "Ready", "Listeners"}, rows); err != nil {
		return err
	}
	if len(failing) > 0 {
		fmt.Fprintln(w)
		return printTable(w, []string{"Netns cookie", "Failing listener", "Error"}, failing)
	}
	return nil
}
