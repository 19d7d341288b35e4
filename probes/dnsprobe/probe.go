package main

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Name is one name the probe looks up: its kind (for the summary), and what is right.
type Name struct {
	Kind   string `json:"kind"`
	Name   string `json:"name"`
	Exists bool   `json:"exists"` // false: NXDOMAIN is the right answer
}

// Record is one scheduled slot's outcome, one JSON line on stdout, in the shape of the
// harness's open-loop probe records (loadtest/measurements/openloop.py): slot k, its
// scheduled wall-clock time, latency from it, and a cause that is null on success.
type Record struct {
	Instance string   `json:"i"`     // this process (a restarted container is a new one)
	K        int      `json:"k"`     // 0, 1, ... on the schedule from the process's start
	Sched    float64  `json:"sched"` // scheduled time, Unix seconds
	Name     string   `json:"name"`
	Kind     string   `json:"kind"`
	Expect   string   `json:"expect"` // "A" or "NXDOMAIN"
	Rcode    string   `json:"rcode,omitempty"`
	Answers  []string `json:"answers"`
	LagMs    *float64 `json:"lag_ms"` // scheduled to sent; null: not sent
	Ms       *float64 `json:"ms"`     // scheduled to the application's answer; null: not sent
	Queries  int      `json:"queries"`
	Attempts int      `json:"attempts"`
	Cause    *string  `json:"cause"` // null: the right answer
}

// Failure causes, as the harness's other probes name them.
const (
	causeTimeout   = "timeout"
	causeTransport = "transport" // no DNS endpoint (ICMP unreachable), a socket error
	causeUnsent    = "unsent"
)

// Probe runs the open-loop schedule: slot k is due at start + k/rate whatever happened to
// the slots before it; a slot that finds MaxInflight lookups pending is not sent and is a
// failure (cause "unsent").
type Probe struct {
	Instance    string
	Names       []Name
	Rate        float64
	MaxInflight int
	Resolver    *Resolver
	Emit        func(Record)
	inflight    atomic.Int64
	pending     sync.WaitGroup
}

// Inflight is the number of lookups sent and not yet answered.
func (p *Probe) Inflight() int64 { return p.inflight.Load() }

// Run probes from start until ctx ends; it returns the next slot number (slots scheduled)
// and does not wait for lookups still in flight (Drain does).
func (p *Probe) Run(ctx context.Context, start time.Time, tick func(next int)) int {
	interval := time.Duration(float64(time.Second) / p.Rate)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for slot := 0; ; slot++ {
		due := start.Add(time.Duration(slot) * interval)
		timer.Reset(time.Until(due))
		select {
		case <-ctx.Done():
			return slot
		case <-timer.C:
		}
		if tick != nil {
			tick(slot)
		}
		n := p.Names[slot%len(p.Names)]
		rec := Record{Instance: p.Instance, K: slot, Sched: unix(due), Name: n.Name,
			Kind: n.Kind, Expect: expect(n), Answers: []string{}}
		if p.inflight.Load() >= int64(p.MaxInflight) {
			c := causeUnsent
			rec.Cause = &c
			p.Emit(rec)
			continue
		}
		p.inflight.Add(1)
		p.pending.Add(1)
		go func() {
			defer p.pending.Done()
			defer p.inflight.Add(-1)
			lag := msSince(due)
			res := p.Resolver.Lookup(n.Name)
			ms := msSince(due)
			rec.LagMs, rec.Ms = &lag, &ms
			rec.Rcode, rec.Queries, rec.Attempts = res.Rcode, res.Queries, res.Attempts
			if res.Answers != nil {
				rec.Answers = res.Answers
			}
			if c := Judge(n, res); c != "" {
				rec.Cause = &c
			}
			p.Emit(rec)
		}()
	}
}

func msSince(t time.Time) float64 { return float64(time.Since(t).Microseconds()) / 1000 }

// Drain waits up to timeout for the lookups in flight, so those of the last seconds are
// recorded too (when DNS is down they are the failures); false if some are still pending.
func (p *Probe) Drain(timeout time.Duration) bool {
	done := make(chan struct{})
	go func() { p.pending.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Judge says why a lookup failed: "" when it did what the name calls for, else "timeout",
// "transport" or "rcode X" (the wrong answer).
func Judge(n Name, r Result) string {
	switch {
	case r.Rcode == "TIMEOUT":
		return causeTimeout
	case r.Rcode == "REFUSED-CONN" || strings.HasPrefix(r.Rcode, "ERROR"):
		return causeTransport
	case n.Exists && r.OK(), !n.Exists && r.Rcode == "NXDOMAIN":
		return ""
	}
	return "rcode " + r.Rcode
}

// LookupTimeout is how long glibc waits for one name the server never answers: every attempt at
// every server (a search that times out tries the as-is name too: twice that).
func (c Config) LookupTimeout() time.Duration {
	return time.Duration(c.Timeout*c.Attempts*len(c.Nameservers)) * time.Second
}

func expect(n Name) string {
	if n.Exists {
		return "A"
	}
	return "NXDOMAIN"
}

func unix(t time.Time) float64 { return float64(t.UnixMicro()) / 1e6 }
