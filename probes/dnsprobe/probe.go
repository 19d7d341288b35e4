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

// Record is one scheduled slot's outcome, one JSON line on stdout. Field names follow the
// harness's DNS records (loadtest/measurements/dns.py) so one summary reads both.
type Record struct {
	Instance string   `json:"i"`    // this process (a restarted container is a new one)
	Slot     int      `json:"slot"` // 0, 1, ... on the schedule from the process's start
	T        float64  `json:"t"`    // scheduled time, Unix seconds
	Name     string   `json:"name"`
	Kind     string   `json:"kind"`
	Expect   string   `json:"expect"` // "A" or "NXDOMAIN"
	Sent     bool     `json:"sent"`   // false: the in-flight bound was reached
	Rcode    string   `json:"rcode"`
	Answers  []string `json:"answers"`
	Ms       float64  `json:"ms"` // from the scheduled time to the application's answer
	Queries  int      `json:"queries"`
	Attempts int      `json:"attempts"`
	Error    bool     `json:"error"`
	Cause    string   `json:"cause,omitempty"` // why a failure failed
}

// Probe runs the open-loop schedule: slot k is due at start + k/rate whatever happened to
// the slots before it; a slot that finds MaxInflight lookups pending is not sent and is a
// failure (cause "unsent", latency the lookup's whole timeout budget).
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
		rec := Record{Instance: p.Instance, Slot: slot, T: unix(due), Name: n.Name,
			Kind: n.Kind, Expect: expect(n), Answers: []string{}}
		if p.inflight.Load() >= int64(p.MaxInflight) {
			rec.Rcode, rec.Error, rec.Cause = "UNSENT", true, "unsent"
			rec.Ms = p.budget(n.Name).Seconds() * 1000
			p.Emit(rec)
			continue
		}
		p.inflight.Add(1)
		p.pending.Add(1)
		go func() {
			defer p.pending.Done()
			defer p.inflight.Add(-1)
			res := p.Resolver.Lookup(n.Name)
			rec.Ms = float64(time.Since(due).Microseconds()) / 1000
			rec.Sent, rec.Rcode, rec.Queries, rec.Attempts = true, res.Rcode, res.Queries, res.Attempts
			if res.Answers != nil {
				rec.Answers = res.Answers
			}
			rec.Cause = Judge(n, res)
			rec.Error = rec.Cause != ""
			p.Emit(rec)
		}()
	}
}

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

// Judge says why a lookup failed ("" when it did what the name calls for).
func Judge(n Name, r Result) string {
	if n.Exists {
		if r.OK() {
			return ""
		}
		if r.Rcode == "NOERROR" {
			return "nodata"
		}
	} else if r.Rcode == "NXDOMAIN" {
		return ""
	} else if r.OK() {
		return "resolved" // a name that must not exist answered
	}
	return cause(r.Rcode)
}

func cause(rcode string) string {
	switch {
	case rcode == "REFUSED-CONN":
		return "refused"
	case strings.HasPrefix(rcode, "ERROR"):
		return "error"
	}
	return strings.ToLower(rcode)
}

// budget is how long glibc waits for a name when the server does not answer: every attempt
// at every server times out for the first candidate (which ends the search) and for the
// as-is name tried after it.
func (p *Probe) budget(name string) time.Duration {
	c := p.Resolver.Conf
	per := time.Duration(c.Timeout*c.Attempts*len(c.Nameservers)) * time.Second
	return per * time.Duration(min(2, len(Candidates(name, c))))
}

func expect(n Name) string {
	if n.Exists {
		return "A"
	}
	return "NXDOMAIN"
}

func unix(t time.Time) float64 { return float64(t.UnixMicro()) / 1e6 }
