package main

import (
	"os"
	"path/filepath"
	"testing"

	"k8s.io/client-go/rest"
)

func TestImpersonation(t *testing.T) {
	id, err := NewIdentity("", "system:serviceaccount:telemetry:agent-%d", "")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &rest.Config{BearerToken: "admin"}
	id.Apply(cfg, 7)
	if cfg.Impersonate.UserName != "system:serviceaccount:telemetry:agent-7" || cfg.BearerToken != "admin" {
		t.Errorf("%+v", cfg.Impersonate)
	}
	if _, err := NewIdentity("", "agent-%s", ""); err == nil {
		t.Errorf("a format without %%d accepted")
	}
	if _, err := NewIdentity("a", "b", ""); err == nil {
		t.Error("two identities accepted")
	}
}

func TestTokenDir(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"agent-10.token", "agent-2.token", "agent-1.token", ".hidden"} {
		os.WriteFile(filepath.Join(dir, n), []byte("t"), 0o600)
	}
	id, err := NewIdentity("", "", dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &rest.Config{TLSClientConfig: rest.TLSClientConfig{CertData: []byte("cert"), KeyData: []byte("key")}, Impersonate: rest.ImpersonationConfig{UserName: "u"}}
	id.Apply(cfg, 4) // 3 files: wraps to the second
	if cfg.BearerTokenFile != filepath.Join(dir, "agent-2.token") || cfg.CertData != nil || cfg.Impersonate.UserName != "" {
		t.Errorf("token file %s, cert %q, impersonate %q", cfg.BearerTokenFile, cfg.CertData, cfg.Impersonate.UserName)
	}
}
