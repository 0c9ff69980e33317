// Command diskd is the diskd network daemon (with -d) and its interactive
// client on the control socket (without -d). See diskd(8) and the README.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/diskd/diskd/service/daemon"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	o, err := parseArgs(args, os.Getenv, os.Getuid(), pathExists)
	if errors.Is(err, flag.ErrHelp) {
		printUsage(os.Stdout)
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "diskd: %v\n", err)
		return 2
	}
	if o.version {
		fmt.Println("diskd", version)
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if !o.daemon {
		return RunClient(ctx, o.socket, os.Stdin, os.Stdout, os.Stderr)
	}
	o.cfg.Version = version
	if err := daemon.Run(ctx, o.cfg, newLogger()); err != nil {
		fmt.Fprintf(os.Stderr, "diskd: %v\n", err)
		return 1
	}
	return 0
}

// newLogger logs to stderr; under systemd (JOURNAL_STREAM set) without a
// timestamp, since the journal stamps every line itself.
func newLogger() *slog.Logger {
	opts := &slog.HandlerOptions{}
	if os.Getenv("JOURNAL_STREAM") != "" {
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
