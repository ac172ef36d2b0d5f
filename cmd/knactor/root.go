package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
)

func newRootCommand() *cobra.Command {
	var level, format, pprofAddr string
	root := &cobra.Command{
		Use:           "knactor",
		Short:         "Stateful serverless actors on Knative-style autoscaling",
		SilenceUsage:  true,
		SilenceErrors: false,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			h, err := newLogHandler(os.Stderr, format, level)
			if err != nil {
				return err
			}
			slog.SetDefault(slog.New(h))
			if pprofAddr != "" { // it serves as long as the process runs
				_, err := servePprof(cmd.Context(), pprofAddr)
				return err
			}
			return nil
		},
	}
	root.PersistentFlags().StringVar(&level, "log-level", "info", "log level: debug, info, warn or error")
	root.PersistentFlags().StringVar(&format, "log-format", "text", "log format: text (key=value) or json (one object per line, for log collectors)")
	root.PersistentFlags().StringVar(&pprofAddr, "pprof-listen", "", "serve Go's profiles (/debug/pprof/) on this address, e.g. 127.0.0.1:6060 (off by default; keep it on loopback)")
	root.AddCommand(newRouterCommand(), newUpCommand(), newAutoscalerCommand())
	return root
}

// newLogHandler returns the handler of knactor's logs: format "text" or "json", at level
// ("debug", "info", "warn" or "error") and above, written to w.
func newLogHandler(w io.Writer, format, level string) (slog.Handler, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.NewTextHandler(w, opts), nil
	case "json":
		return slog.NewJSONHandler(w, opts), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", format)
}
