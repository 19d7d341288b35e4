package main

import (
	"fmt"
	"reflect"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Query is what one target asks the API server for, on behalf of one node's agent.
type Query struct {
	Namespace     string // "" for cluster-wide (node scope is cluster-wide plus a field selector)
	LabelSelector string
	FieldSelector string
}

// nodeFieldSelector is the node-local selector of scope "node" for a resource.
func nodeFieldSelector(resource, node string) string {
	switch resource {
	case "pods":
		return "spec.nodeName=" + node
	case "nodes":
		return "metadata.name=" + node
	case "events":
		// core/v1 events carry no node field the server can select on but their object;
		// a node's own events are those whose involvedObject is the node.
		return "involvedObject.kind=Node,involvedObject.name=" + node
	}
	return ""
}

// BuildQuery turns a target into namespace and selectors for node; label and field
// selectors from the profile are ANDed with the node scope's selector.
func BuildQuery(t Target, node string) (Query, error) {
	q := Query{}
	if t.Scope == "namespace" && t.Namespace != nil {
		q.Namespace = *t.Namespace
	}
	if t.LabelSelector != "" {
		sel, err := labels.Parse(t.LabelSelector)
		if err != nil {
			return q, fmt.Errorf("%s: label_selector %q: %v", t.Label(), t.LabelSelector, err)
		}
		q.LabelSelector = sel.String()
	}
	var parts []string
	if t.FieldSelector != "" {
		if _, err := fields.ParseSelector(t.FieldSelector); err != nil {
			return q, fmt.Errorf("%s: field_selector %q: %v", t.Label(), t.FieldSelector, err)
		}
		parts = append(parts, t.FieldSelector)
	}
	if t.Scope == "node" {
		if node == "" {
			return q, fmt.Errorf("%s: scope node needs a node name", t.Label())
		}
		parts = append(parts, nodeFieldSelector(t.Resource, node))
	}
	if len(parts) > 0 {
		sel, err := fields.ParseSelector(strings.Join(parts, ","))
		if err != nil {
			return q, fmt.Errorf("%s: field selector: %v", t.Label(), err)
		}
		q.FieldSelector = sel.String()
	}
	return q, nil
}

// GroupVersion of a target ("" group is the core group).
func (t Target) GroupVersion() schema.GroupVersion {
	return schema.GroupVersion{Group: t.Group, Version: t.APIVersion}
}

// TypedKind finds the Go type a built-in resource decodes into, in scheme: the kind whose
// guessed plural is the resource and whose List kind is registered. ok is false for
// resources the scheme does not know (custom resources): those go through the dynamic client.
func TypedKind(scheme *runtime.Scheme, gv schema.GroupVersion, resource string) (schema.GroupVersionKind, bool) {
	types := scheme.KnownTypes(gv)
	var found []string
	for kind := range types {
		if strings.HasSuffix(kind, "List") {
			continue
		}
		if _, ok := types[kind+"List"]; !ok {
			continue
		}
		plural, _ := meta.UnsafeGuessKindToResource(gv.WithKind(kind))
		if plural.Resource == resource {
			found = append(found, kind)
		}
	}
	if len(found) != 1 {
		return schema.GroupVersionKind{}, false
	}
	return gv.WithKind(found[0]), true
}

// newObject returns a fresh instance of a registered kind (for the reflector's expected type).
func newObject(scheme *runtime.Scheme, gvk schema.GroupVersionKind) (runtime.Object, error) {
	t, ok := scheme.AllKnownTypes()[gvk]
	if !ok {
		return nil, fmt.Errorf("kind %s not registered", gvk)
	}
	return reflect.New(t).Interface().(runtime.Object), nil
}
