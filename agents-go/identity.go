package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"k8s.io/client-go/rest"
)

// Identity is who an agent is to the API server. Tokens are read by client-go from their
// files; they are never held in flags, logs or the stats file.
type Identity struct {
	Kind        string // "kubeconfig", "token-file", "impersonate", "token-dir"
	TokenFile   string
	Impersonate string   // format with at most one %d: the agent's index
	TokenFiles  []string // token-dir: agent i uses TokenFiles[i % len]
}

// NewIdentity picks the identity from the flags; at most one may be given.
func NewIdentity(tokenFile, impersonate, tokenDir string) (Identity, error) {
	n := 0
	for _, s := range []string{tokenFile, impersonate, tokenDir} {
		if s != "" {
			n++
		}
	}
	if n > 1 {
		return Identity{}, fmt.Errorf("give at most one of --token-file, --impersonate, --token-dir")
	}
	switch {
	case tokenFile != "":
		if _, err := os.Stat(tokenFile); err != nil {
			return Identity{}, fmt.Errorf("--token-file: %v", err)
		}
		return Identity{Kind: "token-file", TokenFile: tokenFile}, nil
	case impersonate != "":
		if strings.Count(impersonate, "%") > 1 || (strings.Contains(impersonate, "%") &&
			!strings.Contains(impersonate, "%d")) {
			return Identity{}, fmt.Errorf("--impersonate: the format takes one %%d (the agent index), got %q", impersonate)
		}
		return Identity{Kind: "impersonate", Impersonate: impersonate}, nil
	case tokenDir != "":
		entries, err := os.ReadDir(tokenDir)
		if err != nil {
			return Identity{}, fmt.Errorf("--token-dir: %v", err)
		}
		var files []string
		for _, e := range entries {
			if !e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
				files = append(files, filepath.Join(tokenDir, e.Name()))
			}
		}
		if len(files) == 0 {
			return Identity{}, fmt.Errorf("--token-dir %s: no token files", tokenDir)
		}
		sortNatural(files)
		return Identity{Kind: "token-dir", TokenFiles: files}, nil
	}
	return Identity{Kind: "kubeconfig"}, nil
}

// UserName is the impersonated user of agent idx ("" when not impersonating).
func (id Identity) UserName(idx int) string {
	if id.Kind != "impersonate" {
		return ""
	}
	if strings.Contains(id.Impersonate, "%d") {
		return fmt.Sprintf(id.Impersonate, idx)
	}
	return id.Impersonate
}

// Apply sets agent idx's credentials on cfg (a copy of the kubeconfig's).
func (id Identity) Apply(cfg *rest.Config, idx int) {
	useToken := func(file string) {
		// Only the CA and server stay from the kubeconfig.
		cfg.BearerToken, cfg.BearerTokenFile = "", file
		cfg.Username, cfg.Password = "", ""
		cfg.CertFile, cfg.KeyFile, cfg.CertData, cfg.KeyData = "", "", nil, nil
		cfg.AuthProvider, cfg.ExecProvider = nil, nil
		cfg.Impersonate = rest.ImpersonationConfig{}
	}
	switch id.Kind {
	case "token-file":
		useToken(id.TokenFile)
	case "token-dir":
		useToken(id.TokenFiles[idx%len(id.TokenFiles)])
	case "impersonate":
		cfg.Impersonate = rest.ImpersonationConfig{UserName: id.UserName(idx)}
	}
}

// sortNatural orders agent-2 before agent-10 (and agent-2.token before agent-10.token).
func sortNatural(s []string) {
	sort.SliceStable(s, func(a, b int) bool {
		pa, na := splitNumber(s[a])
		pb, nb := splitNumber(s[b])
		if pa != pb {
			return pa < pb
		}
		return na < nb
	})
}

// splitNumber splits "dir/agent-10.token" into ("dir/agent-", 10), ignoring the extension.
func splitNumber(x string) (string, int) {
	if dot := strings.LastIndexByte(x, '.'); dot > strings.LastIndexByte(x, '/') {
		x = x[:dot]
	}
	i := len(x)
	for i > 0 && x[i-1] >= '0' && x[i-1] <= '9' {
		i--
	}
	n, _ := strconv.Atoi(x[i:])
	return x[:i], n
}
