package main

import (
	"strings"
	"testing"
)

func TestShippedProfilesParse(t *testing.T) {
	for _, name := range []string{"kubelet-like", "telemetry-v1", "telemetry-v2"} {
		p, err := LoadProfile(name, "../profiles")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if p.Name != name {
			t.Errorf("%s: name %q", name, p.Name)
		}
	}
}

func TestDefaultsFollowPython(t *testing.T) {
	p, err := ParseProfile([]byte("name: x\nwatches:\n  - resource: pods\n    scope: node\npolls:\n  - resource: nodes\n    interval_seconds: 5\n"), "x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	w := p.Watches[0]
	if w.ListResourceVersion != "0" || w.PageSize != 500 || w.ContentType != "json" || w.APIVersion != "v1" ||
		!w.Bookmarks || w.TimeoutSeconds != 300 || w.TimeoutJitter != 1 || w.WatchList || w.ResyncSeconds != 0 {
		t.Errorf("watch defaults: %+v", w)
	}
	q := p.Polls[0]
	if q.Scope != "cluster" || q.Jitter != 0.1 || q.PageSize != 500 || q.ListResourceVersion != "0" {
		t.Errorf("poll defaults: %+v", q)
	}
	if p.Version != 1 || p.UserAgent != "loadtest-agent/0" || p.Identity != "shared-serviceaccount" {
		t.Errorf("profile defaults: %+v", p)
	}
	if p.Backoff != (Backoff{0.8, 30, 2, 1}) {
		t.Errorf("backoff defaults: %+v", p.Backoff)
	}
}

func TestTelemetryV2IsTheIncidentPattern(t *testing.T) {
	p, err := LoadProfile("../profiles/telemetry-v2.yaml", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Polls) != 2 {
		t.Fatalf("polls: %+v", p.Polls)
	}
	for _, q := range p.Polls {
		if q.ListResourceVersion != "" || q.PageSize != 0 || q.Scope != "cluster" || q.IntervalSeconds != 60 || q.Jitter != 0.2 {
			t.Errorf("poll: %+v", q)
		}
	}
}

func TestInvalidProfiles(t *testing.T) {
	cases := map[string]string{
		"name: x\nwatches:\n  - resource: pods\n    scop: node\n":                              `unknown field "scop"`,
		"name: x\nwatches:\n  - resource: pods\n    scope: rack\n":                             "watches.0.scope: should be 'node', 'namespace' or 'cluster'",
		"name: x\nwatches:\n  - resource: services\n    scope: node\n":                         "scope 'node' is defined for pods, nodes and events only",
		"name: x\npolls:\n  - resource: pods\n    scope: namespace\n    interval_seconds: 1\n": "scope 'namespace' needs a namespace",
		"name: x\npolls:\n  - resource: pods\n    interval_seconds: 0\n":                       "polls.0.interval_seconds: should be greater than 0",
		"name: x\nwatches:\n  - resource: pods\n    list_resource_version: \"5\"\n":            "list_resource_version: should be '' or '0'",
		"name: x\n":            "a profile needs at least one watch or poll",
		"name: X\npolls: []\n": "name: should match",
		"name: x\nbackoff:\n  factr: 2\nwatches:\n  - resource: pods\n":   `unknown field "factr"`,
		"name: x\nwatches:\n  - resource: pods\n    timeout_seconds: 0\n": "timeout_seconds: should be in [1, 3600]",
	}
	for in, want := range cases {
		_, err := ParseProfile([]byte(in), "bad.yaml")
		if err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "bad.yaml: ") {
			t.Errorf("%q: got %v, want %q", in, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: error is not one line: %q", in, err)
		}
	}
}
