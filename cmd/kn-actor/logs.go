package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// followPoll is how often logs -f looks for new output and new pods.
const followPoll = 200 * time.Millisecond

// defaultLogDir is where `knactor up` writes pod logs without --log-dir: beside its default
// --state-dir (cmd/knactor: defaultStateDir), in the user's cache directory.
func defaultLogDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "knactor", "logs")
	}
	return filepath.Join(os.TempDir(), "logs")
}

func newLogsCommand(*globals) *cobra.Command {
	var (
		dir            string
		follow, prefix bool
	)
	cmd := &cobra.Command{
		Use:   "logs FUNCTION",
		Short: "Print the pod logs of a function of a local knactor",
		Long: `Print what the pods of FUNCTION wrote, from the log files a local knactor ("knactor up")
keeps in --log-dir: one file per pod, {log-dir}/{function}/{pod}.log, oldest pod first.

--log-dir must match knactor up's: its default is knactor up's default, and knactor up prints
the directory it uses ("pod logs:") when it starts. With -f, new output and new pods are
printed as they come until Ctrl-C.

On a cluster, "kubectl logs -l serving.knative.dev/service=FUNCTION" prints them for now.`,
		Example: `  kn-actor logs counter
  kn-actor logs counter -f
  kn-actor logs counter --log-dir /tmp/knactor/logs`,
		Args: argsBetween(1, 1, "FUNCTION"),
		RunE: func(cmd *cobra.Command, args []string) error {
			fn := args[0]
			if fn == "" || strings.ContainsAny(fn, `/\`) || fn == "." || fn == ".." {
				return fmt.Errorf("function %q: give a function's name (`kn-actor list` shows them)", fn)
			}
			l := &podLogs{dir: filepath.Join(dir, fn), out: cmd.OutOrStdout(), prefix: prefix || follow}
			if !follow {
				files, err := l.files()
				if err != nil {
					return err
				}
				if len(files) == 0 {
					return fmt.Errorf("no pod logs of function %q in %s: its pods start on its first call (invoke it first), "+
						"or knactor up keeps them elsewhere: pass the --log-dir it printed at start", fn, dir)
				}
				l.prefix = l.prefix || len(files) > 1
				return l.copyNew(files, true)
			}
			if files, _ := l.files(); len(files) == 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "waiting for pods of function %q (logs in %s)...\n", fn, l.dir)
			}
			return l.follow(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&dir, "log-dir", defaultLogDir(), "knactor up's --log-dir")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output until Ctrl-C")
	cmd.Flags().BoolVar(&prefix, "prefix", false, "start each line with its pod's name (default: with several pods, or -f)")
	return cmd
}

// podLogs prints the log files of one function's pods.
type podLogs struct {
	dir    string
	out    io.Writer
	prefix bool
	// offsets and partial are per file: how far it was printed, and an unfinished last line
	// (printed once it ends, so lines of two pods never mix).
	offsets map[string]int64
	partial map[string][]byte
}

// files returns the function's pod log files, oldest pod first (pod names count up).
func (l *podLogs) files() ([]string, error) {
	entries, err := os.ReadDir(l.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading pod logs: %w", err)
	}
	var files []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".log") {
			files = append(files, filepath.Join(l.dir, e.Name()))
		}
	}
	sort.Strings(files)
	return files, nil
}

// copyNew prints what each file gained since the last call: every complete line, each with
// its pod's name when prefix is set, and with whole also an unfinished last line. A file that
// shrank (rewritten) is printed from the start.
func (l *podLogs) copyNew(files []string, whole bool) error {
	if l.offsets == nil {
		l.offsets, l.partial = map[string]int64{}, map[string][]byte{}
	}
	for _, path := range files {
		data, err := l.readFrom(path)
		if err != nil {
			return err
		}
		if len(data) == 0 {
			continue
		}
		data = append(l.partial[path], data...)
		if whole && data[len(data)-1] != '\n' {
			data = append(data, '\n')
		}
		end := bytes.LastIndexByte(data, '\n') + 1
		l.partial[path] = bytes.Clone(data[end:])
		if err := l.writeLines(path, data[:end]); err != nil {
			return err
		}
	}
	return nil
}

// readFrom returns what path holds past its offset, and moves the offset to its end.
func (l *podLogs) readFrom(path string) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // removed meanwhile
	}
	if err != nil {
		return nil, fmt.Errorf("reading pod log: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading pod log: %w", err)
	}
	off := l.offsets[path]
	if info.Size() < off {
		off, l.partial[path] = 0, nil
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil, fmt.Errorf("reading pod log: %w", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("reading pod log: %w", err)
	}
	l.offsets[path] = off + int64(len(data))
	return data, nil
}

func (l *podLogs) writeLines(path string, lines []byte) error {
	if !l.prefix {
		_, err := l.out.Write(lines)
		return err
	}
	tag := []byte("[" + strings.TrimSuffix(filepath.Base(path), ".log") + "] ")
	var b bytes.Buffer
	for line := range bytes.Lines(lines) {
		b.Write(tag)
		b.Write(line)
	}
	_, err := l.out.Write(b.Bytes())
	return err
}

// flush prints every file's unfinished last line.
func (l *podLogs) flush() error {
	paths := make([]string, 0, len(l.partial))
	for p, rest := range l.partial {
		if len(rest) > 0 {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	for _, p := range paths {
		if err := l.writeLines(p, append(l.partial[p], '\n')); err != nil {
			return err
		}
		l.partial[p] = nil
	}
	return nil
}

// follow prints the logs and then what they gain, including new pods, until ctx ends.
func (l *podLogs) follow(ctx context.Context) error {
	tick := time.NewTicker(followPoll)
	defer tick.Stop()
	for {
		files, err := l.files()
		if err != nil {
			return err
		}
		if err := l.copyNew(files, false); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return l.flush()
		case <-tick.C:
		}
	}
}
