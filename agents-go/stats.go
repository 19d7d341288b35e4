package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Request names are "VERB resource [scope]", as the Locust agents report them.

// ReqStats counts one request name (e.g. "LIST pods [node]") over all agents.
type ReqStats struct {
	Count   atomic.Int64
	Bytes   atomic.Int64 // response body bytes on the wire (gzip-compressed if the server compressed)
	Decoded atomic.Int64 // bytes after gzip decoding, for compressed responses only
	Errors  atomic.Int64 // transport errors and HTTP status >= 400

	mu    sync.Mutex
	codes map[int]int64
}

func (r *ReqStats) code(c int) {
	r.mu.Lock()
	if r.codes == nil {
		r.codes = map[int]int64{}
	}
	r.codes[c]++
	r.mu.Unlock()
}

// TargetStats counts what the informers and pollers of one target label saw.
type TargetStats struct {
	Events      [5]atomic.Int64 // ADDED, MODIFIED, DELETED, BOOKMARK, ERROR
	Reconnects  atomic.Int64    // WATCH requests after a reflector's first
	Relists     atomic.Int64    // LISTs (first pages) after a reflector's first
	Relists410  atomic.Int64    // 410 Gone / Expired seen by a watch or list (forces a relist)
	ListErrors  atomic.Int64    // LISTs (reflector or poll) that failed
	WatchErrors atomic.Int64    // WATCH requests that failed or ended with an error
	Items       atomic.Int64    // objects received in LIST responses
}

var eventTypes = [5]string{"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"}

func eventIndex(t string) int {
	for i, e := range eventTypes {
		if e == t {
			return i
		}
	}
	return 4
}

// Stats is shared by all agents. The maps are filled before agents start and only read
// afterwards, so counting needs no lock.
type Stats struct {
	requests map[string]*ReqStats
	targets  map[string]*TargetStats
	other    *ReqStats // requests outside any target (e.g. listing nodes at start)

	Dials         atomic.Int64
	SetupRequests atomic.Int64 // LIST nodes pages of --node-selector, with the kubeconfig's identity
	ConnsOpen     atomic.Int64
	ConnsPeak     atomic.Int64
	AgentsStarted atomic.Int64
	AgentsRunning atomic.Int64
	TransportErrs atomic.Int64
	InFlightWatch atomic.Int64
	start         time.Time
}

func NewStats(p *Profile) *Stats {
	s := &Stats{requests: map[string]*ReqStats{}, targets: map[string]*TargetStats{},
		other: &ReqStats{}, start: time.Now()}
	add := func(t Target, verbs ...string) {
		if s.targets[t.Label()] == nil {
			s.targets[t.Label()] = &TargetStats{}
		}
		for _, v := range verbs {
			if s.requests[v+" "+t.Label()] == nil {
				s.requests[v+" "+t.Label()] = &ReqStats{}
			}
		}
	}
	for _, w := range p.Watches {
		add(w.Target, "LIST", "WATCH")
	}
	for _, q := range p.Polls {
		add(q.Target, "LIST")
	}
	return s
}

// Request returns the counters for verb and label (or the "other" bucket).
func (s *Stats) Request(verb, label string) *ReqStats {
	if r := s.requests[verb+" "+label]; r != nil {
		return r
	}
	return s.other
}

func (s *Stats) connOpened() {
	n := s.ConnsOpen.Add(1)
	for {
		peak := s.ConnsPeak.Load()
		if n <= peak || s.ConnsPeak.CompareAndSwap(peak, n) {
			return
		}
	}
}

func (s *Stats) Target(label string) *TargetStats { return s.targets[label] }

// Totals is a snapshot for the progress line.
type Totals struct {
	Lists, Watches, Bytes, Errors, Events int64
}

func (s *Stats) Totals() Totals {
	var t Totals
	for name, r := range s.requests {
		n := r.Count.Load()
		if strings.HasPrefix(name, "LIST ") {
			t.Lists += n
		} else {
			t.Watches += n
		}
		t.Bytes += r.Bytes.Load()
		t.Errors += r.Errors.Load()
	}
	t.Errors += s.other.Errors.Load()
	for _, ts := range s.targets {
		for i := range ts.Events {
			t.Events += ts.Events[i].Load()
		}
	}
	return t
}

type reqReport struct {
	Count     int64            `json:"count"`
	Bytes     int64            `json:"response_bytes"`
	Gunzipped int64            `json:"gunzipped_bytes"`
	Errors    int64            `json:"errors"`
	Codes     map[string]int64 `json:"status_codes"`
}

type targetReport struct {
	WatchEvents map[string]int64 `json:"watch_events"`
	Bookmarks   int64            `json:"bookmarks"`
	Reconnects  int64            `json:"reconnects"`
	Relists     int64            `json:"relists"`
	Relists410  int64            `json:"relists_410"`
	ListErrors  int64            `json:"list_errors"`
	WatchErrors int64            `json:"watch_errors"`
	ListItems   int64            `json:"list_items"`
}

// Report is the JSON written at exit.
type Report struct {
	Tool              string                  `json:"tool"`
	Profile           string                  `json:"profile"`
	ProfileFile       string                  `json:"profile_file"`
	Agents            int                     `json:"agents"`
	AgentsStarted     int64                   `json:"agents_started"`
	Nodes             int                     `json:"nodes"`
	Identity          string                  `json:"identity"`
	FirstAgentUser    string                  `json:"first_agent_user,omitempty"`
	FirstAgentGroups  []string                `json:"first_agent_groups,omitempty"`
	DurationSeconds   float64                 `json:"duration_seconds"`
	Requests          map[string]reqReport    `json:"requests"`
	RequestsByVerb    map[string]int64        `json:"requests_by_verb"`
	RequestsByVerbRes map[string]int64        `json:"requests_by_verb_resource"`
	OtherRequests     reqReport               `json:"other_requests"`
	SetupRequests     int64                   `json:"setup_requests"`
	ResponseBytes     int64                   `json:"response_bytes"`
	WatchEvents       map[string]int64        `json:"watch_events"`
	Bookmarks         int64                   `json:"bookmarks"`
	Reconnects        int64                   `json:"reconnects"`
	Relists           int64                   `json:"relists"`
	Relists410        int64                   `json:"relists_410"`
	Errors            int64                   `json:"errors"`
	Targets           map[string]targetReport `json:"targets"`
	Connections       int64                   `json:"connections_dialed"`
	ConnectionsPeak   int64                   `json:"connections_open_peak"`
	CPUUserSeconds    float64                 `json:"cpu_user_seconds"`
	CPUSysSeconds     float64                 `json:"cpu_system_seconds"`
	CPUSeconds        float64                 `json:"cpu_seconds"`
	CPUPerRequestMs   float64                 `json:"cpu_ms_per_request"`
	MaxRSSBytes       int64                   `json:"max_rss_bytes"`
	HeapInUseBytes    uint64                  `json:"heap_inuse_bytes_at_exit"`
	Goroutines        int                     `json:"goroutines_at_exit"`
}

func (r *ReqStats) report() reqReport {
	out := reqReport{Count: r.Count.Load(), Bytes: r.Bytes.Load(), Gunzipped: r.Decoded.Load(), Errors: r.Errors.Load(),
		Codes: map[string]int64{}}
	r.mu.Lock()
	for c, n := range r.codes {
		out.Codes[strconv.Itoa(c)] = n
	}
	r.mu.Unlock()
	return out
}

// verbResource maps "LIST pods [node]" to "LIST pods", the grain of apiserver_request_total.
func verbResource(name string) string {
	if i := strings.LastIndex(name, " ["); i > 0 {
		return name[:i]
	}
	return name
}

// Rusage is the process's CPU (user, system seconds) and max RSS in bytes.
func Rusage() (user, sys float64, maxRSS int64) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0, 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime), tv(ru.Stime), ru.Maxrss * 1024 // Linux reports KiB
}

// Build assembles the report from the counters.
func (s *Stats) Build(base Report) Report {
	r := base
	r.Tool = "refagent (client-go v0.33.13)"
	r.DurationSeconds = time.Since(s.start).Seconds()
	r.AgentsStarted = s.AgentsStarted.Load()
	r.Requests = map[string]reqReport{}
	r.RequestsByVerb = map[string]int64{}
	r.RequestsByVerbRes = map[string]int64{}
	r.WatchEvents = map[string]int64{}
	r.Targets = map[string]targetReport{}
	for name, rs := range s.requests {
		rep := rs.report()
		r.Requests[name] = rep
		verb, _, _ := strings.Cut(name, " ")
		r.RequestsByVerb[verb] += rep.Count
		r.RequestsByVerbRes[verbResource(name)] += rep.Count
		r.ResponseBytes += rep.Bytes
		r.Errors += rep.Errors
	}
	r.OtherRequests = s.other.report()
	r.SetupRequests = s.SetupRequests.Load()
	r.Errors += r.OtherRequests.Errors
	for label, ts := range s.targets {
		tr := targetReport{WatchEvents: map[string]int64{}, Reconnects: ts.Reconnects.Load(),
			Relists: ts.Relists.Load(), Relists410: ts.Relists410.Load(),
			ListErrors: ts.ListErrors.Load(), WatchErrors: ts.WatchErrors.Load(), ListItems: ts.Items.Load()}
		for i, name := range eventTypes {
			n := ts.Events[i].Load()
			tr.WatchEvents[name] = n
			r.WatchEvents[name] += n
		}
		tr.Bookmarks = tr.WatchEvents["BOOKMARK"]
		r.Bookmarks += tr.Bookmarks
		r.Reconnects += tr.Reconnects
		r.Relists += tr.Relists
		r.Relists410 += tr.Relists410
		r.Targets[label] = tr
	}
	r.Connections = s.Dials.Load()
	r.ConnectionsPeak = s.ConnsPeak.Load()
	u, sy, rss := Rusage()
	r.CPUUserSeconds, r.CPUSysSeconds, r.CPUSeconds, r.MaxRSSBytes = u, sy, u+sy, rss
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	r.HeapInUseBytes, r.Goroutines = ms.HeapInuse, runtime.NumGoroutine()
	if n := r.RequestsByVerb["LIST"] + r.RequestsByVerb["WATCH"]; n > 0 {
		r.CPUPerRequestMs = 1000 * r.CPUSeconds / float64(n)
	}
	return r
}

// WriteJSON writes v to path atomically (temp file + rename).
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ProgressLine is the one-line summary printed every 10 s.
func (s *Stats) ProgressLine(agents int) string {
	t := s.Totals()
	u, sy, rss := Rusage()
	return fmt.Sprintf("refagent t=%.0fs agents=%d/%d running=%d LIST=%d WATCH=%d watching=%d events=%d "+
		"bytes=%.1fMB errors=%d conns=%d cpu=%.1fs rss=%dMB",
		time.Since(s.start).Seconds(), s.AgentsStarted.Load(), agents, s.AgentsRunning.Load(),
		t.Lists, t.Watches, s.InFlightWatch.Load(), t.Events, float64(t.Bytes)/1e6, t.Errors,
		s.ConnsOpen.Load(), u+sy, rss>>20)
}

// sortedKeys is for stable output in tests and logs.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
