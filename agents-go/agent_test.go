package main

// The informer and poll wiring against a fake API server: first LIST options, a watch
// ended by 410 Gone (relist from the last RV), reconnects, poll pagination.

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

type fakeAPI struct {
	throttle int // answer this many first LISTs with 429 and Retry-After: 1
	mu       sync.Mutex
	lists    []string // query strings of LISTs
	listAt   []time.Time
	watches  []string // query strings of WATCHes
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	w.Header().Set("Content-Type", "application/json")
	f.mu.Lock()
	if q.Get("watch") == "true" {
		f.watches = append(f.watches, r.URL.RawQuery)
		n := len(f.watches)
		f.mu.Unlock()
		w.WriteHeader(200)
		if n == 1 { // the first watch: one event, then the server says the RV is too old
			fmt.Fprintln(w, `{"type":"ADDED","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"b","namespace":"d","resourceVersion":"11"}}}`)
			fmt.Fprintln(w, `{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Expired","code":410,"message":"too old resource version"}}`)
			return
		}
		fmt.Fprintln(w, `{"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"12"}}}`)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		return
	}
	f.lists = append(f.lists, r.URL.RawQuery)
	f.listAt = append(f.listAt, time.Now())
	throttled := len(f.lists) <= f.throttle
	f.mu.Unlock()
	if throttled {
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprintln(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"TooManyRequests","code":429}`)
		return
	}
	cont := ""
	if q.Get("limit") == "1" && q.Get("continue") == "" {
		cont = "next"
	}
	fmt.Fprintf(w, `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"10","continue":%q},"items":[{"metadata":{"name":"a","namespace":"d","resourceVersion":"9"}}]}`, cont)
}

func runFake(t *testing.T, profileYAML string, d time.Duration) (*fakeAPI, Report) {
	return runFakeAPI(t, &fakeAPI{}, profileYAML, d)
}

func runFakeAPI(t *testing.T, f *fakeAPI, profileYAML string, d time.Duration) (*fakeAPI, Report) {
	t.Helper()
	p, err := ParseProfile([]byte(profileYAML), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(f)
	defer srv.Close()
	stats := NewStats(p)
	a, err := NewAgent(&rest.Config{Host: srv.URL}, 0, "n1", Identity{Kind: "kubeconfig"}, p, stats,
		&Options{QPS: 0, PollStart: "immediate"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	if err := a.Run(ctx, &wg); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f, stats.Build(Report{})
}

func TestInformerRelistsAfter410(t *testing.T) {
	f, r := runFake(t, `
name: t
backoff: {initial_seconds: 0.01, max_seconds: 0.02}
watches:
  - resource: pods
    scope: node
    timeout_seconds: 60
    timeout_jitter: 0
`, 1500*time.Millisecond)
	if len(f.lists) < 2 || len(f.watches) < 2 {
		t.Fatalf("lists %v watches %v", f.lists, f.watches)
	}
	want0 := "fieldSelector=spec.nodeName%3Dn1&limit=500&resourceVersion=0"
	if f.lists[0] != want0 {
		t.Errorf("first LIST %q, want %q", f.lists[0], want0)
	}
	// after a 410 on the watch, client-go relists "not older than" the last RV it saw
	if want := "fieldSelector=spec.nodeName%3Dn1&limit=500&resourceVersion=11"; f.lists[1] != want {
		t.Errorf("relist %q, want %q", f.lists[1], want)
	}
	if want := "allowWatchBookmarks=true&fieldSelector=spec.nodeName%3Dn1&resourceVersion=10&timeoutSeconds=60&watch=true"; f.watches[0] != want {
		t.Errorf("first WATCH %q, want %q", f.watches[0], want)
	}
	tr := r.Targets["pods [node]"]
	if tr.Relists410 != 1 || tr.Relists != 1 || tr.Reconnects != int64(len(f.watches)-1) ||
		tr.WatchEvents["ERROR"] != 1 || tr.WatchEvents["ADDED"] != 1 || tr.Bookmarks != 1 {
		t.Errorf("target stats %+v", tr)
	}
	if r.RequestsByVerb["LIST"] != int64(len(f.lists)) || r.RequestsByVerb["WATCH"] != int64(len(f.watches)) {
		t.Errorf("counted %v, server saw %d lists %d watches", r.RequestsByVerb, len(f.lists), len(f.watches))
	}
}

func TestFirstListOptionsFromProfile(t *testing.T) {
	f, _ := runFake(t, `
name: t
watches:
  - resource: pods
    list_resource_version: ""
    page_size: 1
    bookmarks: false
    timeout_seconds: 100
    timeout_jitter: 0
`, 300*time.Millisecond)
	if len(f.lists) != 2 || f.lists[0] != "limit=1" || f.lists[1] != "continue=next&limit=1" {
		t.Errorf("lists %q", f.lists)
	}
	if len(f.watches) == 0 || f.watches[0] != "resourceVersion=10&timeoutSeconds=100&watch=true" {
		t.Errorf("watches %q", f.watches)
	}
}

func TestPollPaginates(t *testing.T) {
	f, r := runFake(t, `
name: t
polls:
  - resource: pods
    interval_seconds: 0.2
    jitter: 0
    page_size: 1
    list_resource_version: ""
`, 500*time.Millisecond)
	// at 0, 0.2 and 0.4 s: two pages each
	if len(f.lists) != 6 || f.lists[0] != "limit=1" || f.lists[1] != "continue=next&limit=1" {
		t.Errorf("lists %q", f.lists)
	}
	if r.Targets["pods [cluster]"].ListItems != int64(len(f.lists)) {
		t.Errorf("items %d", r.Targets["pods [cluster]"].ListItems)
	}
}

func TestRetryAfterOn429(t *testing.T) {
	f, r := runFakeAPI(t, &fakeAPI{throttle: 1}, `
name: t
polls:
  - resource: pods
    interval_seconds: 100
`, 1500*time.Millisecond)
	if len(f.lists) != 2 {
		t.Fatalf("lists %q", f.lists)
	}
	rq := r.Requests["LIST pods [cluster]"]
	if rq.Count != 2 || rq.Codes["429"] != 1 || rq.Codes["200"] != 1 || rq.Errors != 1 {
		t.Errorf("requests %+v", rq)
	}
	if tr := r.Targets["pods [cluster]"]; tr.ListErrors != 0 || tr.ListItems != 1 {
		t.Errorf("the retried LIST did not succeed: %+v", tr)
	}
	if gap := f.listAt[1].Sub(f.listAt[0]); gap < 900*time.Millisecond {
		t.Errorf("retried after %v: Retry-After: 1 not honoured", gap)
	}
}
