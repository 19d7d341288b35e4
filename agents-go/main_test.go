package main

import "testing"

// A DaemonSet pod learns its node from the downward API as NODE_NAME; `loadtest record`
// runs refagent that way.
func TestNodeNameFromEnvironment(t *testing.T) {
	t.Setenv("NODE_NAME", "kwok-rec-000003")
	o, err := parseFlags([]string{"--profile", "p"})
	if err != nil || o.NodeName != "kwok-rec-000003" {
		t.Fatalf("NODE_NAME not taken: %v %+v", err, o)
	}
	o, err = parseFlags([]string{"--profile", "p", "--node-name", "n1"})
	if err != nil || o.NodeName != "n1" {
		t.Fatalf("--node-name not taken: %v %+v", err, o)
	}
}
