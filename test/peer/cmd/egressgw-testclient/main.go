// Command egressgw-testclient plays, in a real cluster, the demo's external host and its
// pods' clients (the protocol of package peer):
//
//	egressgw-testclient serve [-port 8080]          # the external host's TCP and UDP servers
//	egressgw-testclient who [-udp] 203.0.113.10:8080 # prints the source the server saw
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

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
	const usage = "usage: egressgw-testclient serve [-port N] | who [-udp] HOST:PORT"
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
	case "-h", "-help", "--help", "help":
		fmt.Println(usage)
		return nil
	default:
		return fmt.Errorf("unknown command %q: serve or who", args[0])
	}
}
