package main

// Agent profiles: the same YAML files, defaults and validation rules as
// loadtest/agents/profile.py (pydantic). Keep the two in step: a field or default that
// changes there changes here.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"

	"sigs.k8s.io/yaml"
)

type Backoff struct {
	InitialSeconds float64 `json:"initial_seconds"`
	MaxSeconds     float64 `json:"max_seconds"`
	Factor         float64 `json:"factor"`
	Jitter         float64 `json:"jitter"`
}

// Target is which objects a watch or poll asks for. It has no UnmarshalJSON of its own:
// Watch and Poll embed it, and a promoted method would swallow their fields.
type Target struct {
	Resource            string  `json:"resource"`
	Group               string  `json:"group"`
	APIVersion          string  `json:"api_version"`
	Scope               string  `json:"scope"`
	Namespace           *string `json:"namespace"`
	LabelSelector       string  `json:"label_selector"`
	FieldSelector       string  `json:"field_selector"`
	ListResourceVersion string  `json:"list_resource_version"`
	PageSize            int64   `json:"page_size"`
	ContentType         string  `json:"content_type"`
}

type Watch struct {
	Target
	Bookmarks      bool    `json:"bookmarks"`
	TimeoutSeconds int64   `json:"timeout_seconds"`
	TimeoutJitter  float64 `json:"timeout_jitter"`
	WatchList      bool    `json:"watch_list"`
	ResyncSeconds  int64   `json:"resync_seconds"`
}

type Poll struct {
	Target
	IntervalSeconds float64 `json:"interval_seconds"`
	Jitter          float64 `json:"jitter"`
}

type Profile struct {
	Version     int     `json:"version"`
	Name        string  `json:"name"`
	Description string  `json:"description"`
	UserAgent   string  `json:"user_agent"`
	Identity    string  `json:"identity"`
	Watches     []Watch `json:"watches"`
	Polls       []Poll  `json:"polls"`
	Backoff     Backoff `json:"backoff"`
}

func defaultBackoff() Backoff {
	return Backoff{InitialSeconds: 0.8, MaxSeconds: 30, Factor: 2, Jitter: 1}
}

func defaultTarget() Target {
	return Target{APIVersion: "v1", Scope: "cluster", ListResourceVersion: "0", PageSize: 500,
		ContentType: "json"}
}

func defaultProfile() Profile {
	return Profile{Version: 1, UserAgent: "loadtest-agent/0", Identity: "shared-serviceaccount",
		Backoff: defaultBackoff()}
}

// strictDecode fills v (already holding its defaults) from b, refusing unknown fields.
func strictDecode(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

func (b *Backoff) UnmarshalJSON(data []byte) error {
	type plain Backoff
	v := plain(defaultBackoff())
	if err := strictDecode(data, &v); err != nil {
		return err
	}
	*b = Backoff(v)
	return nil
}

func (w *Watch) UnmarshalJSON(data []byte) error {
	type plain Watch
	v := plain{Target: defaultTarget(), Bookmarks: true, TimeoutSeconds: 300, TimeoutJitter: 1}
	if err := strictDecode(data, &v); err != nil {
		return err
	}
	*w = Watch(v)
	return nil
}

func (p *Poll) UnmarshalJSON(data []byte) error {
	type plain Poll
	v := plain{Target: defaultTarget(), Jitter: 0.1}
	if err := strictDecode(data, &v); err != nil {
		return err
	}
	*p = Poll(v)
	return nil
}

func (p *Profile) UnmarshalJSON(data []byte) error {
	type plain Profile
	v := plain(defaultProfile())
	if err := strictDecode(data, &v); err != nil {
		return err
	}
	*p = Profile(v)
	return nil
}

var (
	resourceRE = regexp.MustCompile(`^[a-z][a-z0-9.]*$`)
	nameRE     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)
)

// Label is the stable request-name suffix, e.g. "pods [node]", as Target.label in Python.
func (t Target) Label() string { return fmt.Sprintf("%s [%s]", t.Resource, t.Scope) }

func (t Target) validate(where string) []string {
	var errs []string
	bad := func(field, msg string) { errs = append(errs, fmt.Sprintf("%s.%s: %s", where, field, msg)) }
	if !resourceRE.MatchString(t.Resource) {
		bad("resource", fmt.Sprintf("should match %s, got %q", resourceRE, t.Resource))
	}
	switch t.Scope {
	case "node", "namespace", "cluster":
	default:
		bad("scope", fmt.Sprintf("should be 'node', 'namespace' or 'cluster', got %q", t.Scope))
	}
	if t.APIVersion == "" {
		bad("api_version", "should not be empty")
	}
	switch t.ListResourceVersion {
	case "", "0":
	default:
		bad("list_resource_version", fmt.Sprintf("should be '' or '0', got %q", t.ListResourceVersion))
	}
	if t.PageSize < 0 {
		bad("page_size", "should be greater than or equal to 0")
	}
	switch t.ContentType {
	case "json", "protobuf":
	default:
		bad("content_type", fmt.Sprintf("should be 'json' or 'protobuf', got %q", t.ContentType))
	}
	if t.Scope == "namespace" && (t.Namespace == nil || *t.Namespace == "") {
		errs = append(errs, where+": scope 'namespace' needs a namespace")
	}
	if t.Scope == "node" && t.Resource != "pods" && t.Resource != "nodes" && t.Resource != "events" {
		errs = append(errs, where+": scope 'node' is defined for pods, nodes and events only")
	}
	return errs
}

// Validate returns every problem, each as field: message, like config.describe in Python.
func (p *Profile) Validate() []string {
	var errs []string
	if p.Version != 1 {
		errs = append(errs, fmt.Sprintf("version: should be 1, got %d", p.Version))
	}
	if !nameRE.MatchString(p.Name) {
		errs = append(errs, fmt.Sprintf("name: should match %s, got %q", nameRE, p.Name))
	}
	switch p.Identity {
	case "shared-serviceaccount", "impersonate", "serviceaccount-per-agent":
	default:
		errs = append(errs, fmt.Sprintf("identity: should be 'shared-serviceaccount', 'impersonate' "+
			"or 'serviceaccount-per-agent', got %q", p.Identity))
	}
	for i, w := range p.Watches {
		where := fmt.Sprintf("watches.%d", i)
		errs = append(errs, w.Target.validate(where)...)
		if w.TimeoutSeconds < 1 || w.TimeoutSeconds > 3600 {
			errs = append(errs, fmt.Sprintf("%s.timeout_seconds: should be in [1, 3600], got %d", where, w.TimeoutSeconds))
		}
		if w.TimeoutJitter < 0 {
			errs = append(errs, where+".timeout_jitter: should be greater than or equal to 0")
		}
		if w.ResyncSeconds < 0 {
			errs = append(errs, where+".resync_seconds: should be greater than or equal to 0")
		}
	}
	for i, q := range p.Polls {
		where := fmt.Sprintf("polls.%d", i)
		errs = append(errs, q.Target.validate(where)...)
		if q.IntervalSeconds <= 0 {
			errs = append(errs, where+".interval_seconds: should be greater than 0")
		}
		if q.Jitter < 0 || q.Jitter > 1 {
			errs = append(errs, fmt.Sprintf("%s.jitter: should be in [0, 1], got %g", where, q.Jitter))
		}
	}
	b := p.Backoff
	if b.InitialSeconds <= 0 {
		errs = append(errs, "backoff.initial_seconds: should be greater than 0")
	}
	if b.MaxSeconds <= 0 {
		errs = append(errs, "backoff.max_seconds: should be greater than 0")
	}
	if b.Factor < 1 {
		errs = append(errs, "backoff.factor: should be greater than or equal to 1")
	}
	if b.Jitter < 0 || b.Jitter > 1 {
		errs = append(errs, "backoff.jitter: should be in [0, 1]")
	}
	if len(p.Watches) == 0 && len(p.Polls) == 0 {
		errs = append(errs, "(top): a profile needs at least one watch or poll")
	}
	return errs
}

// ParseProfile reads a profile from YAML; any problem is one error line naming the source.
func ParseProfile(data []byte, source string) (*Profile, error) {
	var p Profile
	if err := yaml.UnmarshalStrict(data, &p); err != nil {
		return nil, fmt.Errorf("%s: %v", source, err)
	}
	if errs := p.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("%s: %s", source, strings.Join(errs, "; "))
	}
	return &p, nil
}

// LoadProfile reads a profile by path, or by name from profilesDir (e.g. "telemetry-v2").
func LoadProfile(nameOrPath, profilesDir string) (*Profile, error) {
	path := nameOrPath
	if _, err := os.Stat(path); err != nil && !strings.ContainsAny(path, "/.") && profilesDir != "" {
		path = profilesDir + "/" + nameOrPath + ".yaml"
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("profile %q: %v", nameOrPath, err)
	}
	return ParseProfile(data, path)
}
