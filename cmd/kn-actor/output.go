package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

// format is how a command prints its result: -o json, -o yaml, or the command's own human
// form (a table, or the reply as it came).
type format string

const (
	formatHuman format = ""
	formatJSON  format = "json"
	formatYAML  format = "yaml"
)

// parseFormat parses an -o value.
func parseFormat(s string) (format, error) {
	switch f := format(strings.ToLower(strings.TrimSpace(s))); f {
	case formatHuman, formatJSON, formatYAML:
		return f, nil
	}
	return "", fmt.Errorf("-o %q: use -o json or -o yaml, or leave -o out for the default output", s)
}

// addOutputFlag registers -o on cmd.
func addOutputFlag(cmd *cobra.Command, out *string, human string) {
	cmd.Flags().StringVarP(out, "output", "o", "", "output format: json or yaml (default: "+human+")")
}

// printStructured prints v as indented JSON or as YAML.
func printStructured(w io.Writer, f format, v any) error {
	var (
		b   []byte
		err error
	)
	switch f {
	case formatJSON:
		b, err = json.MarshalIndent(v, "", "  ")
		b = append(b, '\n')
	case formatYAML:
		b, err = yaml.Marshal(v)
	default:
		return fmt.Errorf("printStructured: format %q", f)
	}
	if err != nil {
		return fmt.Errorf("encoding the output: %w", err)
	}
	_, err = w.Write(b)
	return err
}

// printTable prints rows under header in aligned columns, as kubectl and kn do.
func printTable(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// printValue prints a JSON or binary value as it came, ending the line after JSON.
func printValue(w io.Writer, v []byte, isJSON bool) error {
	if _, err := w.Write(v); err != nil {
		return err
	}
	if isJSON && (len(v) == 0 || v[len(v)-1] != '\n') {
		_, err := io.WriteString(w, "\n")
		return err
	}
	return nil
}

// jsonOrBase64 splits a value for structured output: JSON as it is, anything else base64 (as
// the API does with its *_b64 fields).
func jsonOrBase64(v []byte) (json.RawMessage, []byte) {
	if len(v) == 0 {
		return json.RawMessage("null"), nil
	}
	if json.Valid(v) {
		return json.RawMessage(v), nil
	}
	return nil, v
}
