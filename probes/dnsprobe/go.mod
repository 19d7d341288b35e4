// The DNS probe that runs as pods (loadtest/measurements/dns_pods.py): lookups through the
// pod's own resolv.conf with glibc's search-list semantics, open-loop, one JSON line per
// lookup on stdout. Built by `loadtest tools build dnsprobe` (clusters/toolchain.toml).
module loadtest.local/dnsprobe

go 1.24.0

require github.com/miekg/dns v1.1.62

require (
	golang.org/x/mod v0.18.0 // indirect
	golang.org/x/net v0.27.0 // indirect
	golang.org/x/sync v0.7.0 // indirect
	golang.org/x/sys v0.22.0 // indirect
	golang.org/x/tools v0.22.0 // indirect
)
