package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsCluster is a NATS cluster of child processes for the fault run and the shared bus
// of load -instances (one node: no cluster, stream R1): each node is this
// binary re-executed as "realtime-bench nats-node", so that a node can be killed with
// SIGKILL (not shut down politely) and restarted on the same ports and store.
type natsCluster struct {
	bin   string
	dir   string
	nodes []*natsProc
}

type natsProc struct {
	name              string
	port, clusterPort int
	dir, log          string
	cmd               *exec.Cmd
	exited            chan struct{}
}

// startNATSCluster starts n nodes and waits until JetStream answers.
func startNATSCluster(ctx context.Context, n int) (*natsCluster, error) {
	if n < 1 {
		return nil, fmt.Errorf("a NATS cluster needs a node, not %d", n)
	}
	bin, err := os.Executable()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "realtime-bench-nats-")
	if err != nil {
		return nil, err
	}
	c := &natsCluster{bin: bin, dir: dir}
	for i := range n {
		p, err := freePort()
		if err != nil {
			c.close()
			return nil, err
		}
		cp, err := freePort()
		if err != nil {
			c.close()
			return nil, err
		}
		name := "n" + strconv.Itoa(i)
		c.nodes = append(c.nodes, &natsProc{name: name, port: p, clusterPort: cp,
			dir: filepath.Join(dir, name), log: filepath.Join(dir, name+".log")})
	}
	for i := range c.nodes {
		if err := c.start(ctx, i); err != nil {
			c.close()
			return nil, err
		}
	}
	if err := c.waitJetStream(ctx, 60*time.Second); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// urls is the client URL list for realtimed's -nats-url.
func (c *natsCluster) urls() string {
	var u []string
	for _, n := range c.nodes {
		u = append(u, fmt.Sprintf("nats://127.0.0.1:%d", n.port))
	}
	return strings.Join(u, ",")
}

// start runs node i and waits until it accepts connections.
func (c *natsCluster) start(ctx context.Context, i int) error {
	n := c.nodes[i]
	var routes []string
	for j, o := range c.nodes {
		if j != i {
			routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", o.clusterPort))
		}
	}
	logf, err := os.OpenFile(n.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	args := []string{"nats-node", "-name", n.name, "-port", strconv.Itoa(n.port), "-store", n.dir}
	if len(c.nodes) > 1 { // one node runs without a cluster (stream R1)
		args = append(args, "-cluster-port", strconv.Itoa(n.clusterPort), "-routes", strings.Join(routes, ","))
	}
	cmd := exec.Command(c.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	n.cmd, n.exited = cmd, make(chan struct{})
	go func(ch chan struct{}) { _ = cmd.Wait(); logf.Close(); close(ch) }(n.exited)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		select {
		case <-n.exited:
			return fmt.Errorf("nats node %s exited at start; see %s", n.name, n.log)
		default:
		}
		if conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", n.port), time.Second); err == nil {
			conn.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("nats node %s not accepting connections; see %s", n.name, n.log)
}

// kill sends SIGKILL to node i and waits for it to be gone.
func (c *natsCluster) kill(i int) {
	n := c.nodes[i]
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	_ = n.cmd.Process.Kill()
	<-n.exited
	n.cmd = nil
}

// waitJetStream waits until the cluster has a JetStream meta leader (an account info
// request succeeds).
func (c *natsCluster) waitJetStream(ctx context.Context, d time.Duration) error {
	nc, err := nats.Connect(c.urls(), nats.Timeout(5*time.Second))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(d)
	var last error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, last = js.AccountInfo(actx)
		cancel()
		if last == nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("JetStream not ready on the NATS cluster: %v", last)
}

func (c *natsCluster) close() {
	for i := range c.nodes {
		c.kill(i)
	}
	os.RemoveAll(c.dir)
}

// cmdNATSNode runs one cluster node until SIGTERM/SIGINT (or SIGKILL).
func cmdNATSNode(args []string) error {
	fs := flag.NewFlagSet("nats-node", flag.ContinueOnError)
	name := fs.String("name", "n0", "server name")
	port := fs.Int("port", 0, "client port")
	cport := fs.Int("cluster-port", 0, "cluster port")
	routes := fs.String("routes", "", "routes to the other nodes, comma-separated")
	store := fs.String("store", "", "JetStream store directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *port == 0 || *store == "" || (*routes != "") != (*cport != 0) {
		return errors.New("nats-node needs -port and -store, and -cluster-port with -routes")
	}
	opts := &server.Options{
		ServerName: *name, Host: "127.0.0.1", Port: *port,
		JetStream: true, StoreDir: *store, NoSigs: true,
	}
	if *cport != 0 {
		opts.Cluster = server.ClusterOpts{Name: "realtime-bench", Host: "127.0.0.1", Port: *cport}
		opts.Routes = server.RoutesFromStr(*routes)
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return err
	}
	s.ConfigureLogger()
	go s.Start()
	if !s.ReadyForConnections(20 * time.Second) {
		return fmt.Errorf("nats node %s not ready", *name)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	s.Shutdown()
	s.WaitForShutdown()
	return nil
}
