// Command images builds the container images of every component, the test client and the
// pod sandbox (pause) as image tarballs, with no container daemon and no registry: make
// images runs it. Each tarball loads with `ctr -n k8s.io images import` (containerd 1.6 and
// later) or `docker load`. The images are those of the Dockerfile, built from the same
// sources with the same go build flags.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	var o options
	flag.StringVar(&o.out, "out", ".cache/images", "the folder to write <image>.tar into")
	flag.StringVar(&o.repo, "repo", "egressgw", "the repository prefix of every image's name")
	flag.StringVar(&o.tag, "tag", "dev", "the tag of every image")
	flag.StringVar(&o.src, "src", ".", "the module's root folder, to build from")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	built, err := build(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
	for _, b := range built {
		fmt.Printf("%-40s %s (%.1f MB)\n", b.ref, b.path, float64(b.size)/1e6)
	}
}
