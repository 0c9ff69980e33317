// Command diskd is the diskd network daemon (with -d) and its interactive
// client on the control socket (without -d). See diskd(8) and the README.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/diskd/diskd/service/daemon"
	"github.com/diskd/diskd/service/logging"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() { os.Exit(run(os.Args[1:])) }

// RunCommand sends one request line (the command given as arguments: diskd
// list --json, diskd find X) to the daemon at path, prints its answer as
// the client does and returns the exit status: 0 for OK, 1 for an error,
// a find that found nothing, or a daemon that cannot be reached.
func RunCommand(ctx context.Context, path, line string, out, errOut io.Writer) int {
	c := dial(ctx, path, errOut)
	if c == nil {
		return 1
	}
	defer c.Close()
	if isQuit(line) {
		return 0
	}
	if send(ctx, c, path, line, out, errOut) != sentOK {
		return 1
	}
	return 0
}

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
	if !o.daemon && len(o.command) > 0 {
		return RunCommand(ctx, o.socket, strings.Join(o.command, " "), os.Stdout, os.Stderr)
	}
	if !o.daemon {
		return RunClient(ctx, o.socket, os.Stdin, os.Stdout, os.Stderr)
	}
	o.cfg.Version = version
	// Under systemd every line carries its syslog priority (see
	// service/logging), so `journalctl -p warning` shows only warnings.
	if err := daemon.Run(ctx, o.cfg, logging.New(o.logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "diskd: %v\n", err)
		return 1
	}
	return 0
}
