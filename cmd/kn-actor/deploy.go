package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

// maxManifestBytes is the largest manifest a local knactor accepts (router.MaxManifestBytes).
const maxManifestBytes = 1 << 20

// deployment is one function of POST /v1/functions' answer (router.Deployment).
type deployment struct {
	Function string   `json:"function"`
	Result   string   `json:"result"`
	Warnings []string `json:"warnings,omitempty"`
}

// deployResult is the answer of POST /v1/functions and deploy's -o json|yaml output.
type deployResult struct {
	Functions []deployment `json:"functions"`
}

func newDeployCommand(g *globals) *cobra.Command {
	var (
		file, output, image string
		cluster             clusterFlags
	)
	cmd := &cobra.Command{
		Use:   "deploy -f FILE",
		Short: "Deploy the functions of a manifest to a local knactor, or to a cluster with --cluster",
		Long: `Deploy the functions of a manifest (Knative Services, YAML or JSON, one or more documents) to
a local knactor ("knactor up"), checked exactly as "knactor up -f FILE" checks them at start.
Either every function of the manifest is deployed or, on any error, none.

Deploying a function again updates it: its autoscaling, timeoutSeconds, containerConcurrency
and state cap at once; a new command, working directory or env for the pods started from then
on (running pods keep theirs until they scale down). A different knactor.dev/write-mode is
refused: restart knactor up to change it.

The knactor.dev/command runs on the knactor's machine in its working directory; a relative
knactor.dev/workdir is resolved against the manifest's directory (the current directory for
-f -).

With --cluster, the same manifest becomes Knative Services on the cluster of the current
kubeconfig context, created or updated, annotated with knactor's autoscaling class
(autoscaling.knative.dev/class: actor.autoscaling.knactor.dev) unless the manifest names one;
--image replaces the serving container's image (ko:// references are ko's to resolve).`,
		Example: `  kn-actor deploy -f examples/hello/service.yaml
  kn-actor deploy -f - < service.yaml
  kn-actor deploy -f examples/counter/service.yaml --cluster --image registry.example.com/counter:v1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := parseFormat(output)
			if err != nil {
				return err
			}
			if file == "" {
				return errors.New("deploy wants -f FILE: the manifest (a Knative Service) to deploy, or -f - for standard input")
			}
			data, dir, err := readManifest(file, g.stdin)
			if err != nil {
				return err
			}
			if cluster.enabled {
				res, err := deployToCluster(cmd.Context(), &cluster, data, dir, image)
				if err != nil {
					return err
				}
				return printDeployed(cmd.OutOrStdout(), cmd.ErrOrStderr(), f, res)
			}
			if image != "" {
				return errors.New("--image applies to --cluster only: a local knactor runs knactor.dev/command")
			}
			c, err := g.newClient()
			if err != nil {
				return err
			}
			header := http.Header{}
			header.Set("Content-Type", manifestType(file))
			header.Set("X-Knactor-Manifest-Dir", dir)
			ans, err := c.do(cmd.Context(), http.MethodPost, "/v1/functions", bytes.NewReader(data), header)
			if err != nil {
				return deployError(c, err, file)
			}
			var res deployResult
			if err := json.Unmarshal(ans.body, &res); err != nil {
				return fmt.Errorf("reading the answer of %s: %w", c.base, err)
			}
			return printDeployed(cmd.OutOrStdout(), cmd.ErrOrStderr(), f, res)
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "manifest to deploy (- for standard input)")
	cmd.Flags().StringVar(&image, "image", "", "with --cluster: the image of the serving container, replacing the manifest's")
	cluster.register(cmd.Flags())
	addOutputFlag(cmd, &output, "one line per function")
	return cmd
}

// readManifest reads the manifest of deploy -f and returns it with its absolute directory.
func readManifest(file string, stdin io.Reader) (data []byte, dir string, err error) {
	var r io.Reader
	if file == "-" {
		if dir, err = os.Getwd(); err != nil {
			return nil, "", err
		}
		r = stdin
	} else {
		f, err := os.Open(file)
		if err != nil {
			return nil, "", fmt.Errorf("reading the manifest: %w", err)
		}
		defer f.Close()
		if info, err := f.Stat(); err == nil && info.IsDir() {
			return nil, "", fmt.Errorf("-f %s is a directory: deploy its manifests one file at a time", file)
		}
		abs, err := filepath.Abs(file)
		if err != nil {
			return nil, "", err
		}
		dir, r = filepath.Dir(abs), f
	}
	data, err = io.ReadAll(io.LimitReader(r, maxManifestBytes+1))
	if err != nil {
		return nil, "", fmt.Errorf("reading the manifest: %w", err)
	}
	if len(data) > maxManifestBytes {
		return nil, "", fmt.Errorf("manifest %s is over %d bytes: split it into several files", file, maxManifestBytes)
	}
	return data, dir, nil
}

// manifestType is the content type of the manifest file.
func manifestType(file string) string {
	if strings.EqualFold(filepath.Ext(file), ".json") {
		return "application/json"
	}
	return "application/yaml"
}

// deployError explains an error of deploy.
func deployError(c *client, err error, file string) error {
	var ae *apiError
	if !errors.As(err, &ae) {
		return err
	}
	name := file
	if file == "-" {
		name = "standard input"
	}
	switch {
	case ae.Code == "not_found":
		return &explained{err: err, msg: fmt.Sprintf(
			"deploying is not yet supported against a cluster (%s has no deploy endpoint): use `kubectl apply -f %s`", c.base, file)}
	case ae.Code == "bad_request":
		return &explained{err: err, msg: fmt.Sprintf("%s: %s", name, ae.Message)}
	case ae.Code == "conflict" || ae.Code == "forbidden":
		return &explained{err: err, msg: ae.Message}
	}
	return c.explain(err, "")
}

// printDeployed prints what deploy did; warnings go to errw.
func printDeployed(w, errw io.Writer, f format, res deployResult) error {
	for _, d := range res.Functions {
		for _, warning := range d.Warnings {
			fmt.Fprintf(errw, "Warning: function %q: %s\n", d.Function, warning)
		}
	}
	if f != formatHuman {
		if res.Functions == nil {
			res.Functions = []deployment{}
		}
		return printStructured(w, f, res)
	}
	for _, d := range res.Functions {
		if _, err := fmt.Fprintf(w, "function %q %s\n", d.Function, d.Result); err != nil {
			return err
		}
	}
	return nil
}
