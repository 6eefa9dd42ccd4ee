package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// Output formats accepted by -format.
const (
	formatTable = "table" // aligned columns for people
	formatJSON  = "json"  // the agent's JSON answer, indented, for machines
)

// addFormatFlag adds -format to cmd, storing its value in p.
func addFormatFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVar(p, "format", formatTable,
		`output format: "table" for people, "json" for the agent's raw JSON answer`)
}

// checkFormat returns a usage error unless format is one addFormatFlag
// documents. "pretty", the name Consul's peering commands use for the
// human format, is accepted as "table".
func checkFormat(cmd *cobra.Command, format *string) error {
	switch *format {
	case formatTable, formatJSON:
		return nil
	case "pretty":
		*format = formatTable
		return nil
	}
	return usageErrorf(cmd, "unknown -format %q: want %q or %q", *format, formatTable, formatJSON)
}

// printTable writes rows under headers as columns separated by at least two
// spaces. A nil headers writes the rows alone. Tabs and newlines inside a
// cell become spaces so they cannot break the columns.
func printTable(w io.Writer, headers []string, rows [][]string) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 8, 2, ' ', 0)
	if headers != nil {
		writeRow(tw, headers)
	}
	for _, row := range rows {
		writeRow(tw, row)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// tabwriter pads a row whose last cells are empty; drop that padding.
	var out bytes.Buffer
	for line := range bytes.Lines(buf.Bytes()) {
		out.Write(bytes.TrimRight(line, " \n"))
		out.WriteByte('\n')
	}
	_, err := w.Write(out.Bytes())
	return err
}

var cellReplacer = strings.NewReplacer("\t", " ", "\n", " ", "\r", " ")

func writeRow(w io.Writer, cells []string) {
	for i, c := range cells {
		if i > 0 {
			io.WriteString(w, "\t")
		}
		io.WriteString(w, cellReplacer.Replace(c))
	}
	io.WriteString(w, "\n")
}

// printJSON writes v as indented JSON followed by a newline. A []byte or
// json.RawMessage is taken to be JSON already (an agent's answer) and is
// re-indented without being decoded, so field order and unknown fields
// survive.
func printJSON(w io.Writer, v any) error {
	var raw []byte
	switch v := v.(type) {
	case json.RawMessage:
		raw = v
	case []byte:
		raw = v
	default:
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			return fmt.Errorf("encode json: %w", err)
		}
		raw = buf.Bytes()
	}
	var out bytes.Buffer
	if err := json.Indent(&out, bytes.TrimSpace(raw), "", "    "); err != nil {
		return fmt.Errorf("indent json: %w", err)
	}
	out.WriteByte('\n')
	_, err := w.Write(out.Bytes())
	return err
}

// list fetches a listing for a command with a -format flag. With -format
// json it prints the agent's answer as it came and returns a nil response;
// otherwise it returns the response for the command to render as a table.
// what names the step in errors ("list peerings").
func (a *app) list(cmd *cobra.Command, format, what, path string, query url.Values) (*Response, error) {
	if err := checkFormat(cmd, &format); err != nil {
		return nil, err
	}
	c, err := a.client()
	if err != nil {
		return nil, err
	}
	resp, err := c.Get(cmd.Context(), path, query)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if format == formatJSON {
		return nil, printJSON(cmd.OutOrStdout(), resp.Body)
	}
	return resp, nil
}
