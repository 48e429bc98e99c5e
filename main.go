// Command populi-db is the durable Populi mesh control plane. main wires
// signals and runs the command line; everything else lives in package cli.
package main

import (
	"context"
	_ "embed"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"populi-db/cli"
)

// openAPI is the repository's API document, served at GET /openapi.yaml.
//
//go:embed openapi.yaml
var openAPI []byte

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sigs
		cancel() // first signal: graceful shutdown
		s := <-sigs
		fmt.Fprintf(os.Stderr, "populi-db: second %v, exiting now\n", s)
		os.Exit(1)
	}()
	app := cli.App()
	app.Metadata = map[string]any{cli.MetadataOpenAPI: openAPI}
	if err := app.RunContext(ctx, os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "populi-db: %v\n", err)
		os.Exit(cli.ExitCode(err)) // 1 refused, 2 usage, 3 unreachable
	}
}
