// Command diskctl is the command-line client of diskd's D-Bus interface
// (org.diskd.Finder): it lists and finds the disks of every host on the
// network, shows peers and status, asks diskd to refresh, announce or ping,
// and prints (or turns into desktop notifications) the changes as they
// happen. See `diskctl --help`.
//
// It is not the interactive client of the control socket (that is `diskd`
// without -d) and holds no state: every answer comes from diskd.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
