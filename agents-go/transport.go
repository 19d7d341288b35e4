package main

import (
	"compress/gzip"
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
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		stats.connOpened()
		return &trackedConn{Conn: c, stats: stats}, nil
	}
}

// trackedConn counts open connections (Go's HTTP/2 client may dial twice when two requests
// race at start and then closes the spare, so dials overstate connections).
type trackedConn struct {
	net.Conn
	stats *Stats
	once  sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() { c.stats.ConnsOpen.Add(-1) })
	return c.Conn.Close()
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
	// Ask for gzip ourselves, as Go's transport would, so that the bytes counted are the
	// bytes on the wire (what apiserver_response_sizes records), then decode as it would.
	ourGzip := false
	if req.Header.Get("Accept-Encoding") == "" && req.Header.Get("Range") == "" {
		req = req.Clone(req.Context())
		req.Header.Set("Accept-Encoding", "gzip")
		ourGzip = true
	}
	resp, err := c.next.RoundTrip(req)
	if err != nil {
		if req.Context().Err() == nil { // not our own shutdown or timeout
			rs.Errors.Add(1)
			c.stats.TransportErrs.Add(1)
		}
		return resp, err
	}
	rs.code(resp.StatusCode)
	if resp.StatusCode >= 400 {
		rs.Errors.Add(1)
	}
	if isWatch && resp.StatusCode < 300 {
		c.stats.InFlightWatch.Add(1)
	}
	body := &countingBody{ReadCloser: resp.Body, rs: rs, stats: c.stats,
		watch: isWatch && resp.StatusCode < 300}
	resp.Body = body
	if ourGzip && resp.Header.Get("Content-Encoding") == "gzip" {
		resp.Header.Del("Content-Encoding")
		resp.Header.Del("Content-Length")
		resp.ContentLength = -1
		resp.Uncompressed = true
		resp.Body = &gunzipBody{raw: body}
	}
	return resp, nil
}

// gunzipBody decodes a gzip body lazily (on first Read), as Go's transport does.
type gunzipBody struct {
	raw *countingBody
	zr  *gzip.Reader
	err error
}

func (g *gunzipBody) Read(p []byte) (int, error) {
	if g.zr == nil && g.err == nil {
		g.zr, g.err = gzip.NewReader(g.raw)
	}
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.zr.Read(p)
	if n > 0 {
		g.raw.rs.Decoded.Add(int64(n))
	}
	return n, err
}

func (g *gunzipBody) Close() error { return g.raw.Close() }

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
