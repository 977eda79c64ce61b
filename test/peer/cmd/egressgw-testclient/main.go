// Command egressgw-testclient plays, in a real cluster, the demo's external host and its
// pods' clients (the protocol of package peer):
//
//	egressgw-testclient serve [-port 8080]          # the external host's TCP and UDP servers
//	egressgw-testclient who [-udp] 203.0.113.10:8080 # prints the source the server saw
//	egressgw-testclient stream [-tag s] [-interval 10ms] [-for 10m] 203.0.113.10:8080
//	                                                 # UDP datagrams "<tag>-<seq>", one every interval
//	egressgw-testclient echo [-interval 20ms] [-for 1m] 203.0.113.10:8080
//	                                                 # one TCP connection, a numbered line every interval,
//	                                                 # every echo checked; prints the source the server saw,
//	                                                 # the lines and the longest wait; fails on a reset
//	egressgw-testclient transfer [-size 16777216] 203.0.113.10:8080
//	                                                 # TCP: size bytes up, then down; prints the source the
//	                                                 # server saw and the bytes each way
//	egressgw-testclient ping [-count 3] [-size 56] [-df] 203.0.113.10
//	                                                 # ICMP echo, unprivileged (net.ipv4.ping_group_range);
//	                                                 # prints the replies, and "pmtu N" once DF meets a smaller MTU
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
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
	const usage = "usage: egressgw-testclient serve [-port N] | who [-udp] HOST:PORT | stream [-tag T] [-interval D] [-for D] HOST:PORT | echo [-interval D] [-for D] HOST:PORT | transfer [-size N] HOST:PORT | ping [-count N] [-size N] [-df] IP"
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
	case "echo":
		interval := flags.Duration("interval", 20*time.Millisecond, "the time between two lines")
		limit := flags.Duration("for", time.Minute, "stop after this long")
		_ = flags.Parse(args[1:])
		if flags.NArg() != 1 {
			return fmt.Errorf("echo takes one HOST:PORT")
		}
		ctx, cancel := context.WithTimeout(ctx, *limit)
		defer cancel()
		res, err := peer.Echo(ctx, flags.Arg(0), *interval)
		fmt.Printf("%s lines %d longest %s\n", res.Source, res.Lines, res.Longest.Round(time.Millisecond))
		return err
	case "transfer":
		size := flags.Int64("size", 16<<20, "the bytes to send, and to have sent back")
		_ = flags.Parse(args[1:])
		if flags.NArg() != 1 {
			return fmt.Errorf("transfer takes one HOST:PORT")
		}
		seen, up, down, err := peer.Transfer(ctx, flags.Arg(0), *size)
		if err != nil {
			return err
		}
		fmt.Println(seen, up, down)
		return nil
	case "ping":
		count := flags.Int("count", 3, "how many echo requests")
		size := flags.Int("size", 56, "the bytes of data in each")
		df := flags.Bool("df", false, "set DF: refuse fragmentation, learn the path MTU")
		_ = flags.Parse(args[1:])
		dst, err := netip.ParseAddr(flags.Arg(0))
		if flags.NArg() != 1 || err != nil {
			return fmt.Errorf("ping takes one IPv4 address")
		}
		lines, err := peer.Ping(ctx, dst, *size, *count, *df)
		for _, l := range lines {
			fmt.Println(l)
		}
		return err
	case "-h", "-help", "--help", "help":
		fmt.Println(usage)
		return nil
	default:
		return fmt.Errorf("unknown command %q: serve, who, stream, echo, transfer or ping", args[0])
	}
}
