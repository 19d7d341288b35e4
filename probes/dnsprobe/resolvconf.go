package main

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Config is what glibc's resolver takes from /etc/resolv.conf (resolv/res_init.c).
type Config struct {
	Nameservers []string `json:"nameservers"`
	Search      []string `json:"search"`
	Ndots       int      `json:"ndots"`
	Timeout     int      `json:"timeout_s"` // per query, seconds
	Attempts    int      `json:"attempts"`  // sends per nameserver
	Port        string   `json:"-"`         // 53 (resolv.conf cannot say otherwise; tests can)
}

// glibc's defaults and bounds (resolv.h: RES_TIMEOUT, RES_DFLRETRY, RES_MAXNDOTS, ...).
const (
	maxNS       = 3
	maxNdots    = 15
	maxTimeout  = 30
	maxAttempts = 5
)

// ParseResolvConf reads a resolv.conf as glibc does: up to three nameservers, the last
// `search` or `domain` line wins, options ndots/timeout/attempts clamped to glibc's bounds.
// No nameserver means the local one (127.0.0.1), as in glibc. Not modelled: `rotate`,
// `edns0`, `single-request` and hostname-derived default domains (pods have none).
func ParseResolvConf(r io.Reader) (Config, error) {
	c := Config{Ndots: 1, Timeout: 5, Attempts: 2}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "nameserver":
			if len(f) > 1 && len(c.Nameservers) < maxNS {
				c.Nameservers = append(c.Nameservers, f[1])
			}
		case "domain":
			if len(f) > 1 {
				c.Search = []string{f[1]}
			}
		case "search":
			c.Search = append([]string(nil), f[1:]...)
		case "options":
			for _, o := range f[1:] {
				k, v, _ := strings.Cut(o, ":")
				n, err := strconv.Atoi(v)
				switch {
				case k == "ndots" && err == nil:
					c.Ndots = clamp(n, 0, maxNdots)
				case k == "timeout" && err == nil:
					c.Timeout = clamp(n, 1, maxTimeout)
				case k == "attempts" && err == nil:
					c.Attempts = clamp(n, 1, maxAttempts)
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return c, fmt.Errorf("reading resolv.conf: %w", err)
	}
	c.Port = "53"
	if len(c.Nameservers) == 0 {
		c.Nameservers = []string{"127.0.0.1"}
	}
	return c, nil
}

func clamp(n, lo, hi int) int {
	if n < lo {
		return lo
	}
	if n > hi {
		return hi
	}
	return n
}
