package main

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// What the kubelet writes for a pod in namespace "probe" (ClusterFirst, kind's node).
const kubeletResolv = `search probe.svc.cluster.local svc.cluster.local cluster.local
nameserver 10.96.0.10
options ndots:5
`

var podConf = mustParse(kubeletResolv)

func mustParse(s string) Config {
	c, err := ParseResolvConf(strings.NewReader(s))
	if err != nil {
		panic(err)
	}
	return c
}

func TestParseKubeletResolvConf(t *testing.T) {
	want := Config{Nameservers: []string{"10.96.0.10"}, Ndots: 5, Timeout: 5, Attempts: 2, Port: "53",
		Search: []string{"probe.svc.cluster.local", "svc.cluster.local", "cluster.local"}}
	if !reflect.DeepEqual(podConf, want) {
		t.Fatalf("got %+v, want %+v", podConf, want)
	}
}

func TestParseOptionsBoundsAndLastSearchWins(t *testing.T) {
	c := mustParse("domain a.example\nsearch b.example c.example # comment\n" +
		"nameserver 1.1.1.1\nnameserver 2.2.2.2\nnameserver 3.3.3.3\nnameserver 4.4.4.4\n" +
		"options timeout:99 attempts:9 ndots:40\noptions attempts:3\n")
	if got := c.Search; !reflect.DeepEqual(got, []string{"b.example", "c.example"}) {
		t.Errorf("search %v", got)
	}
	if len(c.Nameservers) != 3 || c.Timeout != 30 || c.Attempts != 3 || c.Ndots != 15 {
		t.Errorf("got %+v: want 3 nameservers, timeout 30, attempts 3, ndots 15", c)
	}
	if d := mustParse(""); d.Ndots != 1 || d.Timeout != 5 || d.Attempts != 2 ||
		!reflect.DeepEqual(d.Nameservers, []string{"127.0.0.1"}) {
		t.Errorf("glibc defaults: got %+v", d)
	}
}

func fqdns(cs []Candidate) []string {
	out := []string{}
	for _, c := range cs {
		out = append(out, c.FQDN)
	}
	return out
}

func TestCandidatesSearchOrder(t *testing.T) {
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"web", []string{"web.probe.svc.cluster.local.", "web.svc.cluster.local.",
			"web.cluster.local.", "web."}},
		{"kubernetes.default", []string{"kubernetes.default.probe.svc.cluster.local.",
			"kubernetes.default.svc.cluster.local.", "kubernetes.default.cluster.local.",
			"kubernetes.default."}},
		// five dots reach ndots:5: as-is first, then the search list
		{"a.b.c.d.e.f", []string{"a.b.c.d.e.f.", "a.b.c.d.e.f.probe.svc.cluster.local.",
			"a.b.c.d.e.f.svc.cluster.local.", "a.b.c.d.e.f.cluster.local."}},
		{"kubernetes.default.svc.cluster.local.", []string{"kubernetes.default.svc.cluster.local."}},
	} {
		if got := fqdns(Candidates(tc.name, podConf)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
	withRoot := podConf
	withRoot.Search = []string{"svc.cluster.local", "."}
	if got := fqdns(Candidates("x.y", withRoot)); !reflect.DeepEqual(got,
		[]string{"x.y.svc.cluster.local.", "x.y."}) {
		t.Errorf("root on the search list: as-is is not tried twice, got %v", got)
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// fakeDNS answers from a table; names absent are NXDOMAIN. Values: an IP, "SERVFAIL",
// "NODATA", "TIMEOUT", "REFUSED-CONN", or "LOSE1" (first datagram lost, then answered).
type fakeDNS struct {
	mu    sync.Mutex
	table map[string]string
	sent  []string
	seen  map[string]int
}

func (f *fakeDNS) exchange(fqdn, server string, timeout time.Duration) (*Reply, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.seen == nil {
		f.seen = map[string]int{}
	}
	f.sent = append(f.sent, fqdn)
	f.seen[fqdn]++
	switch v := f.table[fqdn]; v {
	case "":
		return &Reply{Rcode: dns.RcodeNameError}, nil
	case "SERVFAIL":
		return &Reply{Rcode: dns.RcodeServerFailure}, nil
	case "NODATA":
		return &Reply{Rcode: dns.RcodeSuccess}, nil
	case "TIMEOUT":
		return nil, timeoutErr{}
	case "REFUSED-CONN":
		return nil, fmt.Errorf("read udp: %w", syscall.ECONNREFUSED)
	case "LOSE1":
		if f.seen[fqdn] == 1 {
			return nil, timeoutErr{}
		}
		return &Reply{Rcode: dns.RcodeSuccess, Answers: []string{"10.0.0.9"}}, nil
	default:
		return &Reply{Rcode: dns.RcodeSuccess, Answers: []string{v}}, nil
	}
}

func lookup(table map[string]string, name string) (Result, []string) {
	f := &fakeDNS{table: table}
	r := &Resolver{Conf: podConf, Exchange: f.exchange}
	return r.Lookup(name), f.sent
}

func TestLookupWalksTheSearchList(t *testing.T) {
	kube := map[string]string{"kubernetes.default.svc.cluster.local.": "10.96.0.1"}
	res, sent := lookup(kube, "kubernetes.default")
	if !res.OK() || res.Queries != 2 || res.Attempts != 1 ||
		sent[1] != "kubernetes.default.svc.cluster.local." {
		t.Errorf("kubernetes.default: %+v via %v", res, sent)
	}
	short := map[string]string{"web.probe.svc.cluster.local.": "10.96.5.5"}
	if res, _ := lookup(short, "web"); !res.OK() || res.Queries != 1 {
		t.Errorf("short name from its own namespace: %+v", res)
	}
	res, sent = lookup(nil, "lt-probe.example.invalid")
	if res.Rcode != "NXDOMAIN" || res.Queries != 4 || res.Names != 4 ||
		sent[3] != "lt-probe.example.invalid." {
		t.Errorf("external name: want NXDOMAIN after 4 queries, got %+v via %v", res, sent)
	}
	fq := "kubernetes.default.svc.cluster.local."
	if res, _ := lookup(kube, fq); !res.OK() || res.Queries != 1 {
		t.Errorf("fully qualified: %+v", res)
	}
}

func TestLookupRetriesAndFailures(t *testing.T) {
	// a lost datagram: the same name sent again, one lookup, two queries, attempts 2
	res, sent := lookup(map[string]string{"web.probe.svc.cluster.local.": "LOSE1"}, "web")
	if !res.OK() || res.Queries != 2 || res.Attempts != 2 || len(sent) != 2 {
		t.Errorf("retry: %+v via %v", res, sent)
	}
	// SERVFAIL (CoreDNS not synced): retried, then the search goes on, and the app is
	// told SERVFAIL when nothing answered
	sf := map[string]string{"web.probe.svc.cluster.local.": "SERVFAIL"}
	res, sent = lookup(sf, "web")
	if res.Rcode != "SERVFAIL" || res.Queries != 5 || res.Attempts != 2 {
		t.Errorf("servfail: %+v via %v", res, sent)
	}
	// a timeout ends the search; the as-is name is still tried
	to := map[string]string{"web.probe.svc.cluster.local.": "TIMEOUT"}
	res, sent = lookup(to, "web")
	if res.Rcode != "NXDOMAIN" || !reflect.DeepEqual(sent, []string{
		"web.probe.svc.cluster.local.", "web.probe.svc.cluster.local.", "web."}) {
		t.Errorf("timeout: %+v via %v", res, sent)
	}
	all := map[string]string{"web.probe.svc.cluster.local.": "TIMEOUT", "web.": "TIMEOUT"}
	if res, _ := lookup(all, "web"); res.Rcode != "TIMEOUT" || res.Queries != 4 {
		t.Errorf("all timing out: %+v", res)
	}
	// no DNS endpoint behind the Service: ICMP unreachable ends the lookup
	ref := map[string]string{"web.probe.svc.cluster.local.": "REFUSED-CONN"}
	if res, sent := lookup(ref, "web"); res.Rcode != "REFUSED-CONN" || len(sent) != 2 {
		t.Errorf("refused: %+v via %v", res, sent)
	}
	// NODATA is remembered: the app is told the name exists without an address
	nd := map[string]string{"web.svc.cluster.local.": "NODATA"}
	if res, _ := lookup(nd, "web"); res.Rcode != "NOERROR" || res.OK() || res.Queries != 4 {
		t.Errorf("nodata: %+v", res)
	}
}

func TestJudge(t *testing.T) {
	must, missing := Name{Exists: true}, Name{Exists: false}
	for _, tc := range []struct {
		n    Name
		r    Result
		want string
	}{
		{must, Result{Rcode: "NOERROR", Answers: []string{"1.2.3.4"}}, ""},
		{must, Result{Rcode: "NXDOMAIN"}, "rcode NXDOMAIN"},
		{must, Result{Rcode: "NOERROR"}, "rcode NOERROR"},
		{must, Result{Rcode: "TIMEOUT"}, "timeout"},
		{must, Result{Rcode: "REFUSED-CONN"}, "transport"},
		{missing, Result{Rcode: "NXDOMAIN"}, ""},
		{missing, Result{Rcode: "SERVFAIL"}, "rcode SERVFAIL"},
		{missing, Result{Rcode: "TIMEOUT"}, "timeout"},
		{missing, Result{Rcode: "NOERROR", Answers: []string{"1.2.3.4"}}, "rcode NOERROR"},
	} {
		if got := Judge(tc.n, tc.r); got != tc.want {
			t.Errorf("%+v %+v: got %q, want %q", tc.n, tc.r, got, tc.want)
		}
	}
}

// The schedule is open-loop: a stalled server does not slow the slots, the bound turns
// extra slots into failures, and latency counts from the scheduled time.
func TestProbeOpenLoop(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var recs []Record
	stall := func(fqdn, server string, timeout time.Duration) (*Reply, error) {
		<-release
		return &Reply{Rcode: dns.RcodeSuccess, Answers: []string{"10.0.0.1"}}, nil
	}
	p := &Probe{Instance: "t", Names: []Name{{Kind: "fq", Name: "a.b.c.d.e.f.", Exists: true}},
		Rate: 100, MaxInflight: 3, Resolver: &Resolver{Conf: podConf, Exchange: stall},
		Emit: func(r Record) { mu.Lock(); recs = append(recs, r); mu.Unlock() }}
	ctx, cancel := context.WithTimeout(context.Background(), 205*time.Millisecond)
	defer cancel()
	next := p.Run(ctx, time.Now(), nil)
	time.Sleep(50 * time.Millisecond)
	close(release)
	deadline := time.Now().Add(2 * time.Second)
	for {
		mu.Lock()
		n := len(recs)
		mu.Unlock()
		if n == next || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if next < 15 || len(recs) != next {
		t.Fatalf("%d slots scheduled in 205 ms at 100/s, %d recorded", next, len(recs))
	}
	unsent, slowest := 0, 0.0
	for _, r := range recs {
		if r.Ms == nil {
			unsent++
			if r.Cause == nil || *r.Cause != "unsent" || r.LagMs != nil {
				t.Errorf("unsent slot: %+v", r)
			}
		} else {
			slowest = max(slowest, *r.Ms)
			if r.Cause != nil || *r.LagMs > *r.Ms {
				t.Errorf("answered slot: %+v", r)
			}
		}
	}
	if unsent != next-3 {
		t.Errorf("%d unsent of %d, want all but the 3 in flight", unsent, next)
	}
	if slowest < 200 {
		t.Errorf("the first slot waited about 250 ms from its schedule, measured %.1f ms", slowest)
	}
}
