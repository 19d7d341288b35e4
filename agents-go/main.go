// refagent: the client-go reference agent. It runs N telemetry agents with the profile
// semantics of loadtest's Python agents (profiles/*.yaml), each with its own connection and
// identity, as N DaemonSet pods would, and writes what they did to a JSON file.
//
//	refagent --kubeconfig K [--context C] --profile FILE --agents N
//	         [--nodes-file F | --node-selector type=kwok | --node-name N (default $NODE_NAME)]
//	         [--token-file F | --impersonate FMT | --token-dir D]
//	         --duration 60s [--ramp-per-second R] --stats FILE.json
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

type Options struct {
	Kubeconfig, Context, ProfilePath, ProfilesDir string
	Agents, FirstIndex                            int
	NodesFile, NodeSelector, NodeName             string
	TokenFile, Impersonate, TokenDir              string
	Duration, Progress                            time.Duration
	RampPerSecond                                 float64
	StatsPath                                     string
	QPS                                           float32
	Burst                                         int
	PollStart                                     string
	WhoAmI                                        bool
}

func parseFlags(args []string) (*Options, error) {
	o := &Options{}
	fs := flag.NewFlagSet("refagent", flag.ContinueOnError)
	fs.StringVar(&o.Kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig file (server, CA, admin credentials)")
	fs.StringVar(&o.Context, "context", "", "kubeconfig context (default: current)")
	fs.StringVar(&o.ProfilePath, "profile", "", "agent profile: a YAML file, or a name in --profiles-dir")
	fs.StringVar(&o.ProfilesDir, "profiles-dir", "profiles", "where profile names are looked up")
	fs.IntVar(&o.Agents, "agents", 1, "number of agents (one per node name; more agents than nodes wrap around)")
	fs.IntVar(&o.FirstIndex, "first-index", 0, "index of the first agent (for --impersonate's %d and --token-dir)")
	fs.StringVar(&o.NodesFile, "nodes-file", "", "node names, one per line")
	fs.StringVar(&o.NodeSelector, "node-selector", "", "list the cluster's nodes with this label selector (e.g. type=kwok)")
	fs.StringVar(&o.NodeName, "node-name", os.Getenv("NODE_NAME"), "the node of every agent, as a DaemonSet pod's NODE_NAME (used without --nodes-file and --node-selector)")
	fs.StringVar(&o.TokenFile, "token-file", "", "bearer token file shared by all agents (a ServiceAccount token)")
	fs.StringVar(&o.Impersonate, "impersonate", "", "impersonate this user per agent on top of the kubeconfig's credentials, e.g. system:serviceaccount:telemetry:agent-%d")
	fs.StringVar(&o.TokenDir, "token-dir", "", "directory of per-agent token files (agent i uses the i-th, in natural order)")
	fs.DurationVar(&o.Duration, "duration", 60*time.Second, "how long to run")
	fs.DurationVar(&o.Progress, "progress", 10*time.Second, "interval of the progress line on stderr")
	fs.Float64Var(&o.RampPerSecond, "ramp-per-second", 0, "agents started per second (0: all at once)")
	fs.StringVar(&o.StatsPath, "stats", "", "write the run's counters to this JSON file")
	qps := fs.Float64("qps", float64(rest.DefaultQPS), "client-side rate limit per agent (client-go default 5; 0 disables)")
	fs.IntVar(&o.Burst, "burst", rest.DefaultBurst, "client-side burst per agent (client-go default 10)")
	fs.StringVar(&o.PollStart, "poll-start", "immediate", "first LIST of a poll loop: 'immediate' at agent start, or 'random' within the first interval")
	fs.BoolVar(&o.WhoAmI, "whoami", false, "before starting, ask the server who the first agent is (SelfSubjectReview) and report it")
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	fs.Var(klogFlags.Lookup("v").Value, "v", "client-go log verbosity")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	o.QPS = float32(*qps)
	switch {
	case o.ProfilePath == "":
		return nil, errors.New("--profile is required")
	case o.Agents < 1:
		return nil, errors.New("--agents must be at least 1")
	case o.NodesFile != "" && o.NodeSelector != "":
		return nil, errors.New("give --nodes-file or --node-selector, not both")
	case o.PollStart != "immediate" && o.PollStart != "random":
		return nil, fmt.Errorf("--poll-start: 'immediate' or 'random', got %q", o.PollStart)
	case o.Duration <= 0:
		return nil, errors.New("--duration must be positive")
	}
	return o, nil
}

func readNodesFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var nodes []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if s := strings.TrimSpace(sc.Text()); s != "" && !strings.HasPrefix(s, "#") {
			nodes = append(nodes, s)
		}
	}
	return nodes, sc.Err()
}

// listNodes asks the cluster for node names with the kubeconfig's own credentials.
// Its LISTs show in the API server's metrics: they are counted as setup_requests.
func listNodes(ctx context.Context, cfg *rest.Config, selector string, stats *Stats) ([]string, error) {
	cs, err := kubernetes.NewForConfig(rest.CopyConfig(cfg))
	if err != nil {
		return nil, err
	}
	var nodes []string
	opts := metav1.ListOptions{LabelSelector: selector, Limit: 500}
	for {
		stats.SetupRequests.Add(1)
		l, err := cs.CoreV1().Nodes().List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("listing nodes (%q): %v", selector, err)
		}
		for _, n := range l.Items {
			nodes = append(nodes, n.Name)
		}
		if l.Continue == "" {
			return nodes, nil
		}
		opts.Continue = l.Continue
	}
}

func needsNodes(p *Profile) bool {
	for _, w := range p.Watches {
		if w.Scope == "node" {
			return true
		}
	}
	for _, q := range p.Polls {
		if q.Scope == "node" {
			return true
		}
	}
	return false
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "refagent:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	o, err := parseFlags(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	profile, err := LoadProfile(o.ProfilePath, o.ProfilesDir)
	if err != nil {
		return err
	}
	id, err := NewIdentity(o.TokenFile, o.Impersonate, o.TokenDir)
	if err != nil {
		return err
	}
	loading := &clientcmd.ClientConfigLoadingRules{ExplicitPath: o.Kubeconfig}
	base, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(loading,
		&clientcmd.ConfigOverrides{CurrentContext: o.Context}).ClientConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig: %v", err)
	}

	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()

	stats := NewStats(profile)
	var nodes []string
	switch {
	case o.NodesFile != "":
		if nodes, err = readNodesFile(o.NodesFile); err != nil {
			return fmt.Errorf("--nodes-file: %v", err)
		}
	case o.NodeSelector != "":
		if nodes, err = listNodes(ctx, base, o.NodeSelector, stats); err != nil {
			return err
		}
	case o.NodeName != "":
		nodes = []string{o.NodeName}
	}
	if len(nodes) == 0 && needsNodes(profile) {
		return fmt.Errorf("profile %s has node-scoped targets: give --nodes-file or --node-selector (found no nodes)", profile.Name)
	}
	if id.Kind == "kubeconfig" {
		klog.Warningf("no --token-file, --impersonate or --token-dir: agents use the kubeconfig's credentials (profile identity: %s)", profile.Identity)
	}

	report := Report{Profile: profile.Name, ProfileFile: o.ProfilePath, Agents: o.Agents,
		Nodes: len(nodes), Identity: id.Kind}
	runCtx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()

	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		t := time.NewTicker(o.Progress)
		defer t.Stop()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-t.C:
				fmt.Fprintln(os.Stderr, stats.ProgressLine(o.Agents))
			}
		}
	}()

	var wg sync.WaitGroup
	start := time.Now()
	var startErr error
	for i := 0; i < o.Agents; i++ {
		if o.RampPerSecond > 0 {
			at := start.Add(time.Duration(float64(i) / o.RampPerSecond * float64(time.Second)))
			if d := time.Until(at); d > 0 {
				select {
				case <-runCtx.Done():
				case <-time.After(d):
				}
			}
		}
		if runCtx.Err() != nil {
			break
		}
		node := ""
		if len(nodes) > 0 {
			node = nodes[i%len(nodes)]
		}
		a, err := NewAgent(base, o.FirstIndex+i, node, id, profile, stats, o)
		if err == nil && i == 0 && o.WhoAmI {
			user, groups, werr := a.WhoAmI(runCtx)
			if werr != nil {
				err = fmt.Errorf("--whoami: %v", werr)
			} else {
				report.FirstAgentUser, report.FirstAgentGroups = user, groups
				fmt.Fprintf(os.Stderr, "refagent: agent %d is %s %v to the API server\n", a.Index, user, groups)
			}
		}
		if err == nil {
			err = a.Run(runCtx, &wg)
		}
		if err != nil {
			startErr = err
			cancel()
			break
		}
	}
	fmt.Fprintf(os.Stderr, "refagent: %d agents of %s started in %.1fs (%d nodes, identity %s)\n",
		stats.AgentsStarted.Load(), profile.Name, time.Since(start).Seconds(), len(nodes), id.Kind)
	<-runCtx.Done()

	// Give reflectors and pollers a moment to stop; write the stats whatever happens.
	stopped := make(chan struct{})
	go func() { wg.Wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		klog.Warning("some agents did not stop within 5s")
	}
	<-progressDone
	final := stats.Build(report)
	fmt.Fprintln(os.Stderr, stats.ProgressLine(o.Agents))
	if o.StatsPath != "" {
		if err := WriteJSON(o.StatsPath, final); err != nil {
			return fmt.Errorf("--stats: %v", err)
		}
	}
	if startErr != nil {
		return startErr
	}
	if ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "refagent: stopped by signal")
	}
	return nil
}
