// Command rmt-go-client drives rmt's gRPC services from Go with stubs generated from the
// repository's proto/ (package rmt.v1): it tokenizes text with the scorer, starts and watches a run
// on the coordinator, lists the rollout workers, and prints the google.rpc.Status details
// (BadRequest, ErrorInfo) of a refused call. build.sh generates the stubs and builds it offline
// against Debian's Go packages; see README.md.
//
//	rmt-go-client [flags] tokenize -text "48+37=" [-tokenizer DIR]
//	rmt-go-client [flags] detokenize -ids 1,2,3 [-tokenizer DIR]
//	rmt-go-client [flags] run -config run.yaml [-steps N] [-out-dir DIR] [-method M] [-run-id ID]
//	rmt-go-client [flags] status [-run-id ID]
//	rmt-go-client [flags] workers
//
// Exit status: 0 on success (for run: the run is DONE), 1 when a run ended otherwise, 2 on a
// usage or gRPC error.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
)

// Usage errors and gRPC errors exit 2, as flag.ExitOnError does; a run that ended other than
// DONE exits 1.
const (
	exitRunNotDone = 1
	exitError      = 2
)

type globals struct {
	scorer, coordinator string
	timeout             time.Duration
	conn                connFlags
}

func main() {
	g := globals{}
	fs := flag.NewFlagSet("rmt-go-client", flag.ExitOnError)
	fs.StringVar(&g.scorer, "scorer", "127.0.0.1:50051", "host:port of the scorer (tokenize, detokenize)")
	fs.StringVar(&g.coordinator, "coordinator", "127.0.0.1:50054", "host:port of the coordinator (run, status, workers)")
	fs.DurationVar(&g.timeout, "timeout", 30*time.Second, "to connect, and for each unary call")
	g.conn.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: rmt-go-client [flags] tokenize|detokenize|run|status|workers [verb flags]")
		fs.PrintDefaults()
	}
	_ = fs.Parse(os.Args[1:])
	if fs.NArg() == 0 {
		fs.Usage()
		os.Exit(exitError)
	}
	if err := g.conn.check(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(exitError)
	}
	verb, args := fs.Arg(0), fs.Args()[1:]
	var code int
	switch verb {
	case "tokenize", "detokenize":
		code = withConn(g, g.scorer, func(cc *grpc.ClientConn) int { return scorerVerb(g, cc, verb, args) })
	case "run", "status", "workers":
		code = withConn(g, g.coordinator, func(cc *grpc.ClientConn) int { return coordinatorVerb(g, cc, verb, args) })
	default:
		fmt.Fprintf(os.Stderr, "unknown verb %q: tokenize, detokenize, run, status or workers\n", verb)
		code = exitError
	}
	os.Exit(code)
}

// withConn dials address, waits until the channel is ready (or the timeout), and runs f on it.
func withConn(g globals, address string, f func(*grpc.ClientConn) int) int {
	opts, err := g.conn.dialOptions()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return exitError
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.timeout)
	defer cancel()
	cc, err := grpc.DialContext(ctx, address, append(opts, grpc.WithBlock())...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "UNAVAILABLE: no service at %s after %s: %v\n", address, g.timeout, err)
		return exitError
	}
	defer cc.Close()
	return f(cc)
}
