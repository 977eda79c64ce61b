package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// checkContainerd imports every tarball into a containerd of its own, as a node would
// (ctr -n k8s.io images import), and runs the pause image for a second. It skips when
// this machine has no containerd (make deps does not install it).
func checkContainerd(t *testing.T, dir, repo, tag string) {
	for _, prog := range []string{"containerd", "ctr", "runc"} {
		if _, err := exec.LookPath(prog); err != nil {
			t.Skipf("no %s here (apt-get install containerd)", prog)
		}
	}
	base, err := os.MkdirTemp("/tmp", "egw-ctrd-") // short: the socket's path has a limit
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	sock := filepath.Join(base, "sock")
	config := filepath.Join(base, "config.toml")
	// Only what ctr needs: no CRI plugin, no stream server.
	if err := os.WriteFile(config, []byte("version = 2\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	daemon := exec.Command("containerd", "--config", config, "--root", filepath.Join(base, "root"), "--state", filepath.Join(base, "state"), "--address", sock)
	daemon.Stdout, daemon.Stderr = &logs, &logs
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = daemon.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- daemon.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = daemon.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("containerd's log:\n%s", logs.String())
		}
	})
	ctr := func(args ...string) *exec.Cmd {
		return exec.Command("ctr", append([]string{"--address", sock, "--namespace", "k8s.io"}, args...)...)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if ctr("version").Run() == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("containerd did not answer within 20 s")
		}
	}

	for _, s := range specs {
		out, err := ctr("images", "import", "--snapshotter", "native", filepath.Join(dir, s.name+".tar")).CombinedOutput()
		if err != nil {
			t.Fatalf("ctr images import %s: %v: %s", s.name, err, out)
		}
	}
	out, err := ctr("images", "list", "-q").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range specs {
		// containerd names an image as the kubelet asks for it, docker.io/ added to a
		// name with no registry.
		if want := repo + "/" + s.name + ":" + tag; !strings.Contains(string(out), want) {
			t.Errorf("containerd lists no %s:\n%s", want, out)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var runOut bytes.Buffer
	run := exec.CommandContext(ctx, "ctr", "--address", sock, "--namespace", "k8s.io", "run", "--rm", "--snapshotter", "native", repo+"/pause:"+tag, "egw-pause")
	run.Stdout, run.Stderr = &runOut, &runOut
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- run.Wait() }()
	select {
	case err := <-exited:
		t.Fatalf("pause exited on its own: %v: %s", err, runOut.String())
	case <-time.After(time.Second):
	}
	if out, err := ctr("tasks", "kill", "--signal", "SIGTERM", "egw-pause").CombinedOutput(); err != nil {
		t.Fatalf("ctr tasks kill: %v: %s", err, out)
	}
	if err := <-exited; err != nil {
		t.Errorf("pause did not exit cleanly on SIGTERM: %v: %s", err, runOut.String())
	}
	if !strings.Contains(runOut.String(), "pause: terminated") {
		t.Errorf("pause did not say it was terminated: %q", runOut.String())
	}
}
