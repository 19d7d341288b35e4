package main

import (
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func testProfile(t *testing.T) *Profile {
	p, err := LoadProfile("../profiles/telemetry-v2.yaml", "")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestStatsLabels(t *testing.T) {
	s := NewStats(testProfile(t))
	want := []string{"LIST nodes [cluster]", "LIST pods [cluster]", "LIST pods [node]", "WATCH pods [node]"}
	got := sortedKeys(s.requests)
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("request names %v, want %v", got, want)
	}
	if s.Request("WATCH", "nodes [cluster]") != s.other {
		t.Error("an unknown name is not counted as other")
	}
}

func TestCountingTransportAndReport(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("fail") != "" {
			w.WriteHeader(http.StatusGone)
		}
		io.WriteString(w, strings.Repeat("x", 1000))
	}))
	defer srv.Close()
	s := NewStats(testProfile(t))
	client := &http.Client{Transport: &countingTransport{next: http.DefaultTransport, stats: s}}
	get := func(label, query string) {
		ctx := withLabel(context.Background(), label)
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/v1/pods?"+query, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	get("pods [node]", "fieldSelector=spec.nodeName%3Dn")
	get("pods [node]", "watch=true")
	get("pods [cluster]", "")
	get("pods [cluster]", "fail=1")
	s.Target("pods [node]").Events[eventIndex("ADDED")].Add(3)
	s.Target("pods [node]").Events[eventIndex("BOOKMARK")].Add(2)
	s.Target("pods [node]").Reconnects.Add(1)

	r := s.Build(Report{Agents: 1})
	if r.Requests["LIST pods [node]"].Count != 1 || r.Requests["WATCH pods [node]"].Count != 1 ||
		r.Requests["LIST pods [cluster]"].Count != 2 {
		t.Errorf("requests: %+v", r.Requests)
	}
	if r.RequestsByVerb["LIST"] != 3 || r.RequestsByVerb["WATCH"] != 1 || r.RequestsByVerbRes["LIST pods"] != 3 {
		t.Errorf("by verb %v, by verb+resource %v", r.RequestsByVerb, r.RequestsByVerbRes)
	}
	if r.ResponseBytes != 4000 || r.Errors != 1 || r.Requests["LIST pods [cluster]"].Codes["410"] != 1 {
		t.Errorf("bytes %d errors %d codes %v", r.ResponseBytes, r.Errors, r.Requests["LIST pods [cluster]"].Codes)
	}
	if r.WatchEvents["ADDED"] != 3 || r.Bookmarks != 2 || r.Reconnects != 1 {
		t.Errorf("events %v bookmarks %d reconnects %d", r.WatchEvents, r.Bookmarks, r.Reconnects)
	}
	if s.InFlightWatch.Load() != 0 {
		t.Errorf("watches in flight after close: %d", s.InFlightWatch.Load())
	}
	if r.CPUSeconds <= 0 || r.MaxRSSBytes <= 0 {
		t.Errorf("rusage: cpu %g rss %d", r.CPUSeconds, r.MaxRSSBytes)
	}
}

func TestVerbResource(t *testing.T) {
	if got := verbResource("LIST pods [node]"); got != "LIST pods" {
		t.Error(got)
	}
}

func TestCountsWireBytesOfGzipResponses(t *testing.T) {
	payload := strings.Repeat(`{"kind":"Pod"}`, 10000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept-Encoding") != "gzip" {
			t.Errorf("Accept-Encoding %q", r.Header.Get("Accept-Encoding"))
		}
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		io.WriteString(zw, payload)
		zw.Close()
	}))
	defer srv.Close()
	s := NewStats(testProfile(t))
	client := &http.Client{Transport: &countingTransport{next: http.DefaultTransport, stats: s}}
	req, _ := http.NewRequestWithContext(withLabel(context.Background(), "pods [cluster]"), "GET", srv.URL, nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != payload {
		t.Fatalf("body not decoded: %d bytes", len(got))
	}
	rs := s.Request("LIST", "pods [cluster]")
	if rs.Bytes.Load() <= 0 || rs.Bytes.Load() >= int64(len(payload)) || rs.Decoded.Load() != int64(len(payload)) {
		t.Errorf("wire %d decoded %d (payload %d)", rs.Bytes.Load(), rs.Decoded.Load(), len(payload))
	}
}
