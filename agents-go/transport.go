package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// Each agent dials its own connection: client-go caches transports by TLS config, so
// agents with equal configs would share one HTTP/2 connection. A Dial function of the
// agent's own makes the config distinct, as N pods with N processes are.
func agentDialer(stats *Stats) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		stats.Dials.Add(1)
		return d.DialContext(ctx, network, addr)
	}
}

type labelKey struct{}

// withLabel tags a request's context with its target label ("pods [node]"), so the
// transport counts it under the right request name.
func withLabel(ctx context.Context, label string) context.Context {
	return context.WithValue(ctx, labelKey{}, label)
}

// countingTransport counts requests, status codes and response bytes by request name.
type countingTransport struct {
	next  http.RoundTripper
	stats *Stats
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	label, _ := req.Context().Value(labelKey{}).(string)
	verb := "LIST"
	isWatch := false
	if w := req.URL.Query().Get("watch"); w == "true" || w == "1" {
		verb, isWatch = "WATCH", true
	}
	var rs *ReqStats
	if label != "" {
		rs = c.stats.Request(verb, label)
	} else {
		rs = c.stats.other
	}
	rs.Count.Add(1)
	resp, err := c.next.RoundTrip(req)
	if err != nil {
		rs.Errors.Add(1)
		c.stats.TransportErrs.Add(1)
		return resp, err
	}
	rs.code(resp.StatusCode)
	if resp.StatusCode >= 400 {
		rs.Errors.Add(1)
	}
	if isWatch && resp.StatusCode < 300 {
		c.stats.InFlightWatch.Add(1)
	}
	resp.Body = &countingBody{ReadCloser: resp.Body, rs: rs, stats: c.stats,
		watch: isWatch && resp.StatusCode < 300}
	return resp, nil
}

type countingBody struct {
	io.ReadCloser
	rs    *ReqStats
	stats *Stats
	watch bool
	once  sync.Once
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.rs.Bytes.Add(int64(n))
	}
	return n, err
}

func (b *countingBody) Close() error {
	b.once.Do(func() {
		if b.watch {
			b.stats.InFlightWatch.Add(-1)
		}
	})
	return b.ReadCloser.Close()
}
