//go:build tools

// Package tools pins crictl for the kind node image.
package tools

import (
	_ "sigs.k8s.io/cri-tools/cmd/crictl"
)
