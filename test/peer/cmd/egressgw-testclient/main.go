// Command egressgw-testclient plays, in a real cluster, the demo's external host and its
// pods' clients (the protocol of package peer):
//
//	egressgw-testclient serve [-port 8080]          # the external host's TCP and UDP servers
//	egressgw-testclient who [-udp] 203.0.113.10:8080 # prints the source the server saw
//	egressgw-testclient stream [-tag s] [-interval 10ms] [-for 10m] 203.0.113.10:8080
//	                                                 # UDP datagrams "<tag>-<seq>", one every interval
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/egressgw/egressgw/test/peer"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "egressgw-testclient:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	const usage = "usage: egressgw-testclient serve [-port N] | who [-udp] HOST:PORT | stream [-tag T] [-interval D] [-for D] HOST:PORT"
	if len(args) == 0 {
		return fmt.Errorf("%s", usage)
	}
	flags := flag.NewFlagSet(args[0], flag.ExitOnError)
	switch args[0] {
	case "serve":
		port := flags.Int("port", peer.Port, "the TCP and UDP port to serve on")
		_ = flags.Parse(args[1:])
		return peer.Serve(ctx, *port)
	case "who":
		udp := flags.Bool("udp", false, "ask over UDP rather than TCP")
		_ = flags.Parse(args[1:])
		if flags.NArg() != 1 {
			return fmt.Errorf("who takes one HOST:PORT")
		}
		network := "tcp"
		if *udp {
			network = "udp"
		}
		src, err := peer.Who(ctx, network, flags.Arg(0))
		if err != nil {
			return err
		}
		fmt.Println(src)
		return nil
	case "stream":
		tag := flags.String("tag", "s", "what each datagram starts with, before -<seq>")
		interval := flags.Duration("interval", 10*time.Millisecond, "the time between two datagrams")
		limit := flags.Duration("for", 10*time.Minute, "stop after this long")
		_ = flags.Parse(args[1:])
		if flags.NArg() != 1 {
			return fmt.Errorf("stream takes one HOST:PORT")
		}
		ctx, cancel := context.WithTimeout(ctx, *limit)
		defer cancel()
		return peer.Stream(ctx, flags.Arg(0), *tag, *interval)
	case "-h", "-help", "--help", "help":
		fmt.Println(usage)
		return nil
	default:
		return fmt.Errorf("unknown command %q: serve, who or stream", args[0])
	}
}
