package main

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"
)

func ns(s string) *string { return &s }

func TestBuildQuery(t *testing.T) {
	cases := []struct {
		t    Target
		want Query
	}{
		{Target{Resource: "pods", Scope: "node"}, Query{FieldSelector: "spec.nodeName=kwok-node-3"}},
		{Target{Resource: "nodes", Scope: "node"}, Query{FieldSelector: "metadata.name=kwok-node-3"}},
		{Target{Resource: "pods", Scope: "cluster"}, Query{}},
		{Target{Resource: "pods", Scope: "node", FieldSelector: "status.phase=Running", LabelSelector: "app=web,tier!=db"},
			Query{FieldSelector: "spec.nodeName=kwok-node-3,status.phase=Running", LabelSelector: "app=web,tier!=db"}},
		{Target{Resource: "configmaps", Scope: "namespace", Namespace: ns("telemetry")}, Query{Namespace: "telemetry"}},
		{Target{Resource: "events", Scope: "node"}, Query{FieldSelector: "involvedObject.kind=Node,involvedObject.name=kwok-node-3"}},
	}
	for _, c := range cases {
		got, err := BuildQuery(c.t, "kwok-node-3")
		if err != nil {
			t.Errorf("%+v: %v", c.t, err)
			continue
		}
		if got != c.want {
			t.Errorf("%+v: got %+v, want %+v", c.t, got, c.want)
		}
	}
	if _, err := BuildQuery(Target{Resource: "pods", Scope: "node"}, ""); err == nil {
		t.Error("node scope without a node: no error")
	}
	if _, err := BuildQuery(Target{Resource: "pods", Scope: "cluster", LabelSelector: "a in (b"}, "n"); err == nil {
		t.Error("bad label selector: no error")
	}
}

func TestTypedKind(t *testing.T) {
	cases := []struct {
		gv       schema.GroupVersion
		resource string
		kind     string
	}{
		{corev1.SchemeGroupVersion, "pods", "Pod"},
		{corev1.SchemeGroupVersion, "nodes", "Node"},
		{corev1.SchemeGroupVersion, "services", "Service"},
		{corev1.SchemeGroupVersion, "configmaps", "ConfigMap"},
		{corev1.SchemeGroupVersion, "events", "Event"},
		{schema.GroupVersion{Group: "discovery.k8s.io", Version: "v1"}, "endpointslices", "EndpointSlice"},
		{schema.GroupVersion{Group: "events.k8s.io", Version: "v1"}, "events", "Event"},
		{schema.GroupVersion{Group: "apps", Version: "v1"}, "daemonsets", "DaemonSet"},
	}
	for _, c := range cases {
		gvk, ok := TypedKind(scheme.Scheme, c.gv, c.resource)
		if !ok || gvk.Kind != c.kind {
			t.Errorf("%s %s: got %v %v, want %s", c.gv, c.resource, gvk, ok, c.kind)
		}
	}
	if _, ok := TypedKind(scheme.Scheme, schema.GroupVersion{Group: "example.com", Version: "v1"}, "widgets"); ok {
		t.Error("a custom resource resolved to a typed kind")
	}
}
