package main

import (
	"log/slog"
	"os"

	"github.com/spf13/cobra"
)

func newRootCommand() *cobra.Command {
	var level, pprofAddr string
	root := &cobra.Command{
		Use:           "knactor",
		Short:         "Stateful serverless actors on Knative-style autoscaling",
		SilenceUsage:  true,
		SilenceErrors: false,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			var l slog.Level
			if err := l.UnmarshalText([]byte(level)); err != nil {
				return err
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})))
			if pprofAddr != "" { // it serves as long as the process runs
				_, err := servePprof(cmd.Context(), pprofAddr)
				return err
			}
			return nil
		},
	}
	root.PersistentFlags().StringVar(&level, "log-level", "info", "log level: debug, info, warn or error")
	root.PersistentFlags().StringVar(&pprofAddr, "pprof-listen", "", "serve Go's profiles (/debug/pprof/) on this address, e.g. 127.0.0.1:6060 (off by default; keep it on loopback)")
	root.AddCommand(newRouterCommand(), newUpCommand(), newAutoscalerCommand())
	return root
}
