package main

import (
	"errors"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// Reply is what one query got back: its rcode and the A records of the answer.
type Reply struct {
	Rcode   int
	Answers []string
}

// Exchanger sends one A query for an absolute name to a server (host:53) and waits up to
// timeout. A missing answer is an error whose Timeout() is true.
type Exchanger func(fqdn, server string, timeout time.Duration) (*Reply, error)

// Result is one lookup as the application sees it, plus what it cost on the wire.
type Result struct {
	Rcode    string   // NOERROR, NXDOMAIN, SERVFAIL, TIMEOUT, REFUSED-CONN, ERROR ...
	Answers  []string // empty unless the lookup succeeded
	Queries  int      // datagrams sent, over every candidate name and attempt
	Attempts int      // the most sends any one candidate name took (2: a retry)
	Names    int      // candidate names tried
	Final    string   // the candidate that answered (or the last one tried)
}

// OK: the application got addresses.
func (r Result) OK() bool { return r.Rcode == "NOERROR" && len(r.Answers) > 0 }

// Candidate is one name res_nsearch may query, and why.
type Candidate struct {
	FQDN string
	Role string // "as-is-first", "search", "as-is-last"
}

// Candidates is the order in which glibc's res_nsearch tries a name when every query says
// NXDOMAIN: a trailing dot means only as-is; at least ndots dots means as-is first; then
// each search domain; then as-is if it was not tried yet (nor was the root on the list).
func Candidates(name string, c Config) []Candidate {
	if strings.HasSuffix(name, ".") {
		return []Candidate{{name, "as-is-first"}}
	}
	var out []Candidate
	asIsFirst := strings.Count(name, ".") >= c.Ndots
	if asIsFirst {
		out = append(out, Candidate{name + ".", "as-is-first"})
	}
	rootOnList := false
	for _, d := range c.Search {
		if d = strings.Trim(d, "."); d == "" {
			rootOnList = true
			out = append(out, Candidate{name + ".", "search"})
		} else {
			out = append(out, Candidate{name + "." + d + ".", "search"})
		}
	}
	if !asIsFirst && !rootOnList {
		out = append(out, Candidate{name + ".", "as-is-last"})
	}
	return out
}

// Resolver resolves names as glibc's stub resolver does (resolv/res_query.c
// __res_context_search, res_send.c): the candidates of Candidates, each sent to every
// nameserver up to `attempts` times; NXDOMAIN and NODATA go on to the next candidate,
// SERVFAIL too (after its retries); a timeout or another failure ends the search (the
// as-is name is still tried if it was not yet); a refused connection ends the lookup.
type Resolver struct {
	Conf     Config
	Exchange Exchanger
}

type outcome int

const (
	answered    outcome = iota // NOERROR with addresses
	noData                     // NOERROR, no address of this type: keep searching
	notFound                   // NXDOMAIN: keep searching
	serverFail                 // SERVFAIL on every try: keep searching
	timedOut                   // no answer on any try: stop searching
	connRefused                // ICMP unreachable (no DNS endpoint): stop the lookup
	otherFail                  // FORMERR, REFUSED, NOTIMP, socket errors: stop searching
)

type try struct {
	outcome outcome
	rcode   string
	answers []string
	sends   int
}

// Lookup resolves name. It keeps no clock of its own: the caller times it from the
// scheduled slot, so every retry and timeout is in the latency.
func (r *Resolver) Lookup(name string) Result {
	res := Result{}
	done := func(rcode string, answers []string) Result {
		res.Rcode, res.Answers = rcode, answers
		return res
	}
	var saved, last *try
	gotNoData, gotServfail, stopped := false, false, false
	for _, c := range Candidates(name, r.Conf) {
		if stopped && c.Role == "search" {
			continue
		}
		t := r.send(c.FQDN)
		res.Queries += t.sends
		res.Names++
		res.Final = c.FQDN
		res.Attempts = max(res.Attempts, t.sends)
		last = &t
		if t.outcome == answered {
			return done(t.rcode, t.answers)
		}
		switch c.Role {
		case "as-is-first":
			if strings.HasSuffix(name, ".") {
				return done(t.rcode, nil)
			}
			saved = &t
		case "search":
			switch t.outcome {
			case connRefused:
				return done(t.rcode, nil)
			case noData:
				gotNoData = true
			case notFound:
			case serverFail:
				gotServfail = true
			default:
				stopped = true
			}
		}
	}
	// What the application is told: the as-is answer if it went first, else NODATA if any
	// candidate had one, else SERVFAIL if any, else the last candidate's failure.
	switch {
	case saved != nil:
		return done(saved.rcode, nil)
	case gotNoData:
		return done("NOERROR", nil)
	case gotServfail:
		return done("SERVFAIL", nil)
	case last != nil:
		return done(last.rcode, nil)
	}
	return done("ERROR no candidate", nil)
}

// send is res_send for one name: every nameserver in turn, `attempts` rounds; SERVFAIL,
// NOTIMP and REFUSED move on to the next server as glibc does.
func (r *Resolver) send(fqdn string) try {
	n := len(r.Conf.Nameservers)
	var lastReply *Reply
	var lastErr error
	refused, sends := 0, 0
	for round := 0; round < r.Conf.Attempts; round++ {
		for i, ns := range r.Conf.Nameservers {
			// glibc's send_dg: retrans << ns_index, divided by the server count past the first
			seconds := r.Conf.Timeout << i
			if i > 0 {
				seconds /= n
			}
			if seconds <= 0 {
				seconds = 1
			}
			sends++
			rep, err := r.Exchange(fqdn, net.JoinHostPort(ns, r.Conf.Port), time.Duration(seconds)*time.Second)
			if err != nil {
				lastErr = err
				if errors.Is(err, syscall.ECONNREFUSED) {
					refused++
				}
				continue
			}
			switch rep.Rcode {
			case dns.RcodeServerFailure, dns.RcodeNotImplemented, dns.RcodeRefused:
				lastReply = rep
				continue
			}
			t := try{rcode: dns.RcodeToString[rep.Rcode], sends: sends}
			switch {
			case rep.Rcode == dns.RcodeSuccess && len(rep.Answers) > 0:
				t.outcome, t.answers = answered, rep.Answers
			case rep.Rcode == dns.RcodeSuccess:
				t.outcome = noData
			case rep.Rcode == dns.RcodeNameError:
				t.outcome = notFound
			default:
				t.outcome = otherFail
			}
			return t
		}
	}
	switch {
	case lastReply != nil && lastReply.Rcode == dns.RcodeServerFailure:
		return try{outcome: serverFail, rcode: "SERVFAIL", sends: sends}
	case lastReply != nil:
		return try{outcome: otherFail, rcode: dns.RcodeToString[lastReply.Rcode], sends: sends}
	case refused == sends:
		return try{outcome: connRefused, rcode: "REFUSED-CONN", sends: sends}
	}
	var ne net.Error
	if errors.As(lastErr, &ne) && ne.Timeout() {
		return try{outcome: timedOut, rcode: "TIMEOUT", sends: sends}
	}
	return try{outcome: otherFail, rcode: "ERROR " + errClass(lastErr), sends: sends}
}

func errClass(err error) string {
	var se syscall.Errno
	if errors.As(err, &se) {
		return se.Error()
	}
	if err == nil {
		return "no nameserver"
	}
	return strings.SplitN(err.Error(), ":", 2)[0]
}

// UDPExchange is the real wire: a connected UDP socket per query (so an ICMP unreachable
// comes back as ECONNREFUSED), a random ID, recursion desired, no EDNS (glibc's default).
func UDPExchange(fqdn, server string, timeout time.Duration) (*Reply, error) {
	m := new(dns.Msg)
	m.SetQuestion(fqdn, dns.TypeA)
	c := &dns.Client{Net: "udp", Timeout: timeout}
	in, _, err := c.Exchange(m, server)
	if err != nil {
		return nil, err
	}
	rep := &Reply{Rcode: in.Rcode}
	for _, rr := range in.Answer {
		if a, ok := rr.(*dns.A); ok {
			rep.Answers = append(rep.Answers, a.A.String())
		}
	}
	return rep, nil
}
