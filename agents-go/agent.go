package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
)

const protobufType = "application/vnd.kubernetes.protobuf"

// Agent is one telemetry agent on one node: one rest.Config, one HTTP client and so one
// connection (HTTP/2 multiplexes its watches and lists), its own identity and rate limiter.
type Agent struct {
	Index   int
	Node    string
	profile *Profile
	stats   *Stats
	opts    *Options

	cfg     *rest.Config
	http    *http.Client
	clients map[string]rest.Interface
	dyn     *dynamic.DynamicClient
}

// NewAgent makes the agent's config from base (the kubeconfig's) and its identity.
func NewAgent(base *rest.Config, idx int, node string, id Identity, p *Profile, stats *Stats,
	opts *Options) (*Agent, error) {
	cfg := rest.CopyConfig(base)
	id.Apply(cfg, idx)
	cfg.UserAgent = p.UserAgent
	cfg.Dial = agentDialer(stats)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return &countingTransport{next: rt, stats: stats}
	}
	// One token bucket per agent shared by all its clients, as a clientset does
	// (client-go's defaults: 5 QPS, burst 10, unless the flags say otherwise).
	cfg.QPS, cfg.Burst = opts.QPS, opts.Burst
	if cfg.QPS > 0 {
		cfg.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(cfg.QPS, cfg.Burst)
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("agent %d: %v", idx, err)
	}
	return &Agent{Index: idx, Node: node, profile: p, stats: stats, opts: opts, cfg: cfg, http: hc,
		clients: map[string]rest.Interface{}}, nil
}

// client is a typed REST client for gv and content type, over the agent's one HTTP client.
func (a *Agent) client(gv schema.GroupVersion, contentType string) (rest.Interface, error) {
	key := gv.String() + "|" + contentType
	if c := a.clients[key]; c != nil {
		return c, nil
	}
	cfg := rest.CopyConfig(a.cfg)
	cfg.GroupVersion = &gv
	cfg.APIPath = "/apis"
	if gv.Group == "" {
		cfg.APIPath = "/api"
	}
	cfg.NegotiatedSerializer = scheme.Codecs.WithoutConversion()
	if contentType == "protobuf" {
		cfg.ContentType = protobufType
		cfg.AcceptContentTypes = protobufType + ",application/json"
	} else {
		cfg.ContentType = "application/json"
		cfg.AcceptContentTypes = "application/json"
	}
	c, err := rest.RESTClientForConfigAndClient(cfg, a.http)
	if err != nil {
		return nil, err
	}
	a.clients[key] = c
	return c, nil
}

// WhoAmI asks the API server who this agent is (a SelfSubjectReview: one CREATE, no
// LIST or WATCH), so a run can show the identity the server saw.
func (a *Agent) WhoAmI(ctx context.Context) (string, []string, error) {
	cs, err := kubernetes.NewForConfigAndClient(a.cfg, a.http)
	if err != nil {
		return "", nil, err
	}
	r, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{},
		metav1.CreateOptions{})
	if err != nil {
		return "", nil, err
	}
	return r.Status.UserInfo.Username, r.Status.UserInfo.Groups, nil
}

// lister is how one target lists and watches: typed (built-in kinds, JSON or protobuf) or
// dynamic (custom resources, JSON).
type lister struct {
	label    string
	resource string
	query    Query
	typed    rest.Interface
	dyn      dynamic.ResourceInterface
	expected runtime.Object
}

func (a *Agent) lister(t Target) (*lister, error) {
	q, err := BuildQuery(t, a.Node)
	if err != nil {
		return nil, err
	}
	l := &lister{label: t.Label(), resource: t.Resource, query: q}
	gv := t.GroupVersion()
	if gvk, ok := TypedKind(scheme.Scheme, gv, t.Resource); ok {
		if l.typed, err = a.client(gv, t.ContentType); err != nil {
			return nil, err
		}
		if l.expected, err = scheme.Scheme.New(gvk); err != nil {
			return nil, err
		}
		return l, nil
	}
	if a.dyn == nil {
		if a.dyn, err = dynamic.NewForConfigAndClient(a.cfg, a.http); err != nil {
			return nil, err
		}
	}
	r := a.dyn.Resource(gv.WithResource(t.Resource))
	if q.Namespace != "" {
		l.dyn = r.Namespace(q.Namespace)
	} else {
		l.dyn = r
	}
	l.expected = &unstructured.Unstructured{}
	return l, nil
}

func (l *lister) list(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	opts.LabelSelector, opts.FieldSelector = l.query.LabelSelector, l.query.FieldSelector
	ctx = withLabel(ctx, l.label)
	if l.typed != nil {
		return l.typed.Get().Namespace(l.query.Namespace).Resource(l.resource).
			VersionedParams(&opts, metav1.ParameterCodec).Do(ctx).Get()
	}
	return l.dyn.List(ctx, opts)
}

func (l *lister) watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.LabelSelector, opts.FieldSelector = l.query.LabelSelector, l.query.FieldSelector
	opts.Watch = true
	ctx = withLabel(ctx, l.label)
	if l.typed != nil {
		return l.typed.Get().Namespace(l.query.Namespace).Resource(l.resource).
			VersionedParams(&opts, metav1.ParameterCodec).Watch(ctx)
	}
	return l.dyn.Watch(ctx, opts)
}

func isGone(err error) bool {
	return apierrors.IsResourceExpired(err) || apierrors.IsGone(err)
}

// Run starts the agent's informers and pollers; they stop when ctx is done.
func (a *Agent) Run(ctx context.Context, wg *sync.WaitGroup) error {
	type job func()
	var jobs []job
	for _, w := range a.profile.Watches {
		l, err := a.lister(w.Target)
		if err != nil {
			return err
		}
		w := w
		jobs = append(jobs, func() { a.runInformer(ctx, w, l) })
	}
	for _, p := range a.profile.Polls {
		l, err := a.lister(p.Target)
		if err != nil {
			return err
		}
		p := p
		jobs = append(jobs, func() { a.runPoller(ctx, p, l) })
	}
	a.stats.AgentsStarted.Add(1)
	a.stats.AgentsRunning.Add(1)
	var mine sync.WaitGroup
	for _, j := range jobs {
		wg.Add(1)
		mine.Add(1)
		go func() { defer wg.Done(); defer mine.Done(); j() }()
	}
	go func() { mine.Wait(); a.stats.AgentsRunning.Add(-1) }()
	return nil
}

// runInformer is client-go's reflector on the target, feeding a thread-safe store (an
// informer's cache), with the profile's timeout, bookmarks, first LIST and backoff.
func (a *Agent) runInformer(ctx context.Context, w Watch, l *lister) {
	ts := a.stats.Target(l.label)
	var listed, watched atomic.Bool
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			if opts.Continue == "" {
				if !listed.Swap(true) {
					// The informer's first LIST: the profile's resourceVersion and limit.
					// Later relists keep client-go's choice (last seen RV, or "" after 410).
					opts.ResourceVersion = w.ListResourceVersion
					opts.ResourceVersionMatch = ""
					opts.Limit = w.PageSize
				} else {
					ts.Relists.Add(1)
				}
			}
			if w.PageSize == 0 {
				opts.Limit = 0
			}
			obj, err := l.list(ctx, opts)
			if err != nil {
				ts.ListErrors.Add(1)
				if isGone(err) {
					ts.Relists410.Add(1)
				}
				logErr(a, l.label, "LIST", err)
				return nil, err
			}
			ts.Items.Add(int64(meta.LenList(obj)))
			return obj, nil
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			if watched.Swap(true) {
				ts.Reconnects.Add(1)
			}
			timeout := int64(float64(w.TimeoutSeconds) * (1 + rand.Float64()*w.TimeoutJitter))
			opts.TimeoutSeconds = &timeout
			if opts.SendInitialEvents == nil {
				opts.AllowWatchBookmarks = w.Bookmarks
			}
			wi, err := l.watch(ctx, opts)
			if err != nil {
				ts.WatchErrors.Add(1)
				if isGone(err) {
					ts.Relists410.Add(1)
				}
				logErr(a, l.label, "WATCH", err)
				return nil, err
			}
			return newCountingWatch(ctx, wi, ts), nil
		},
	}
	store := cache.NewStore(cache.DeletionHandlingMetaNamespaceKeyFunc)
	r := cache.NewReflectorWithOptions(lw, l.expected, store, cache.ReflectorOptions{
		Name:         fmt.Sprintf("agent-%d %s", a.Index, l.label),
		ResyncPeriod: time.Duration(w.ResyncSeconds) * time.Second,
	})
	r.UseWatchList = ptr.To(w.WatchList)
	if w.PageSize > 0 {
		r.WatchListPageSize = w.PageSize
	}
	b := a.profile.Backoff
	// The reflector's own Run uses this backoff with client-go's fixed numbers (which are
	// the profile defaults); running ListAndWatch under the profile's backoff honours a
	// profile that changes them. Retries inside one ListAndWatch (a watch that cannot be
	// opened, a 429 on a watch) keep client-go's internal backoff.
	bm := wait.NewExponentialBackoffManager(seconds(b.InitialSeconds), seconds(b.MaxSeconds),
		2*time.Minute, b.Factor, b.Jitter, clock.RealClock{})
	wait.BackoffUntil(func() {
		if err := r.ListAndWatchWithContext(ctx); err != nil && ctx.Err() == nil {
			logErr(a, l.label, "LIST/WATCH", err)
		}
	}, bm, true, ctx.Done())
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// runPoller LISTs the target every interval*(1 ± jitter), following continue tokens.
func (a *Agent) runPoller(ctx context.Context, p Poll, l *lister) {
	ts := a.stats.Target(l.label)
	first := time.Duration(0)
	if a.opts.PollStart == "random" {
		first = time.Duration(rand.Float64() * p.IntervalSeconds * float64(time.Second))
	}
	timer := time.NewTimer(first)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		a.pollOnce(ctx, p, l, ts)
		d := p.IntervalSeconds * (1 + p.Jitter*(2*rand.Float64()-1))
		timer.Reset(seconds(d))
	}
}

func (a *Agent) pollOnce(ctx context.Context, p Poll, l *lister, ts *TargetStats) {
	opts := metav1.ListOptions{ResourceVersion: p.ListResourceVersion, Limit: p.PageSize}
	for {
		obj, err := l.list(ctx, opts)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			ts.ListErrors.Add(1)
			if isGone(err) {
				ts.Relists410.Add(1)
			}
			logErr(a, l.label, "LIST", err)
			return
		}
		ts.Items.Add(int64(meta.LenList(obj)))
		m, err := meta.ListAccessor(obj)
		if err != nil || m.GetContinue() == "" {
			return
		}
		opts.Continue = m.GetContinue()
		opts.ResourceVersion = ""
	}
}

// countingWatch relays a watch's events to the reflector, counting them by type.
type countingWatch struct {
	inner watch.Interface
	out   chan watch.Event
	stop  chan struct{}
	once  sync.Once
}

func newCountingWatch(ctx context.Context, inner watch.Interface, ts *TargetStats) *countingWatch {
	w := &countingWatch{inner: inner, out: make(chan watch.Event), stop: make(chan struct{})}
	go func() {
		defer close(w.out)
		for ev := range inner.ResultChan() {
			if ev.Type == watch.Error && ctx.Err() != nil {
				// The stream cut by our own shutdown: not the server's doing.
				select {
				case w.out <- ev:
				case <-w.stop:
				}
				return
			}
			ts.Events[eventIndex(string(ev.Type))].Add(1)
			if ev.Type == watch.Error {
				ts.WatchErrors.Add(1)
				if isGone(apierrors.FromObject(ev.Object)) {
					ts.Relists410.Add(1)
				}
			}
			select {
			case w.out <- ev:
			case <-w.stop:
				return
			}
		}
	}()
	return w
}

func (w *countingWatch) ResultChan() <-chan watch.Event { return w.out }

func (w *countingWatch) Stop() {
	w.once.Do(func() { close(w.stop) })
	w.inner.Stop()
}

// logErr logs the first errors in full and then only counts them: 10,000 agents failing
// together would otherwise bury the terminal.
var loggedErrors atomic.Int64

func logErr(a *Agent, label, verb string, err error) {
	if n := loggedErrors.Add(1); n <= 20 {
		klog.Warningf("agent %d (%s) %s %s: %v", a.Index, a.Node, verb, label, err)
		if n == 20 {
			klog.Warning("further errors are counted, not logged")
		}
	}
}
