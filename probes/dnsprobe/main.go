// dnsprobe: DNS lookups as a pod's application makes them, on a fixed schedule.
//
// It reads the pod's /etc/resolv.conf (as the kubelet wrote it: the kube-dns Service
// address, the namespace's search list, ndots:5) and resolves each --name in turn with
// glibc's search-list and retry semantics (resolver.go), open-loop (probe.go). Every lookup
// is one JSON line on stdout, so the harness reads results as they are made by following
// the pod's log; a "start" line names the process and its resolver, a "tick" line every
// 5 s says how far the schedule got and how many lookups are in flight. On SIGTERM it stops
// scheduling, waits up to --drain for the lookups in flight, and writes a "stop" line.
//
//	dnsprobe --rate 10 --name kubernetes=kubernetes.default --missing external=x.example.invalid
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

type nameFlag struct {
	names  *[]Name
	exists bool
}

func (f nameFlag) String() string { return "" }

func (f nameFlag) Set(v string) error {
	kind, name, ok := strings.Cut(v, "=")
	if !ok || kind == "" || name == "" {
		return fmt.Errorf("want KIND=NAME, got %q", v)
	}
	*f.names = append(*f.names, Name{Kind: kind, Name: name, Exists: f.exists})
	return nil
}

func main() {
	var names []Name
	resolvConf := flag.String("resolv-conf", "/etc/resolv.conf", "the resolver configuration")
	rate := flag.Float64("rate", 10, "lookups per second")
	maxInflight := flag.Int("max-inflight", 256, "lookups pending at most; a slot over it is a failure")
	duration := flag.Duration("duration", 6*time.Hour, "stop probing after this long (then idle until SIGTERM)")
	port := flag.String("port", "53", "the nameservers' port (53; another for tests)")
	drain := flag.Duration("drain", 25*time.Second, "on stop, wait this long for lookups in flight")
	flag.Var(nameFlag{&names, true}, "name", "KIND=NAME that must resolve (repeatable)")
	flag.Var(nameFlag{&names, false}, "missing", "KIND=NAME that must answer NXDOMAIN (repeatable)")
	flag.Parse()
	if len(names) == 0 || *rate <= 0 || *maxInflight < 1 {
		fmt.Fprintln(os.Stderr, "dnsprobe: need at least one --name or --missing, --rate > 0, --max-inflight >= 1")
		os.Exit(2)
	}
	f, err := os.Open(*resolvConf)
	if err != nil {
		fmt.Fprintf(os.Stderr, "dnsprobe: %v\n", err)
		os.Exit(1)
	}
	conf, err := ParseResolvConf(f)
	f.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "dnsprobe: %s: %v\n", *resolvConf, err)
		os.Exit(1)
	}
	conf.Port = *port

	out := &jsonLines{enc: json.NewEncoder(os.Stdout)}
	id := make([]byte, 4)
	_, _ = rand.Read(id)
	p := &Probe{Instance: hex.EncodeToString(id), Names: names, Rate: *rate,
		MaxInflight: *maxInflight, Resolver: &Resolver{Conf: conf, Exchange: UDPExchange},
		Emit: func(r Record) { out.write(r) }}
	start := time.Now()
	// the start line of the harness's open-loop records, plus the resolver and the names
	out.write(map[string]any{"event": "start", "i": p.Instance, "t0": unix(start),
		"rate_hz": *rate, "timeout_s": conf.LookupTimeout().Seconds(), "workers": *maxInflight,
		"pod": os.Getenv("POD_NAME"), "node": os.Getenv("NODE_NAME"), "resolv": conf,
		"names": names})

	signalled, stopSignals := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stopSignals()
	ctx, cancel := context.WithTimeout(signalled, *duration)
	defer cancel()
	lastTick := time.Time{}
	next := p.Run(ctx, start, func(slot int) {
		if time.Since(lastTick) >= 5*time.Second {
			lastTick = time.Now()
			out.write(map[string]any{"event": "tick", "i": p.Instance, "t": unix(lastTick),
				"scheduled": slot, "inflight": p.Inflight()})
		}
	})
	reason := "duration"
	if signalled.Err() != nil {
		reason = "signal"
	}
	p.Drain(*drain)
	out.write(map[string]any{"event": "stop", "i": p.Instance, "t": unix(time.Now()),
		"reason": reason, "scheduled": next, "inflight": p.Inflight()})
	<-signalled.Done() // a DaemonSet restarts containers that exit: idle until deleted
}

// jsonLines writes one JSON object per line, whole lines only, from any goroutine.
type jsonLines struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (j *jsonLines) write(v any) {
	j.mu.Lock()
	defer j.mu.Unlock()
	_ = j.enc.Encode(v)
}
