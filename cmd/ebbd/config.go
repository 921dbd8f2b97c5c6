package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ebbrun/ebb/accesslog"
	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/bpf"
	"github.com/ebbrun/ebb/controlplane"
	"github.com/ebbrun/ebb/internal/callbackurl"
	"github.com/ebbrun/ebb/internal/exchange"
	"github.com/ebbrun/ebb/internal/leader"
	"github.com/ebbrun/ebb/internal/liveness"
	"github.com/ebbrun/ebb/internal/redisconn"
	"github.com/ebbrun/ebb/internal/tracing/otlp"
	"github.com/ebbrun/ebb/invoker"
	"github.com/ebbrun/ebb/rollout/promql"
	"github.com/ebbrun/ebb/router"
)

// Roles ebbd can run.
const (
	RoleAll          = "all"
	RoleControlPlane = "controlplane"
	RoleRouter       = "router"
	RoleNodeAgent    = "nodeagent"
)

// Config is ebbd's configuration: flags, optionally on top of a YAML file.
// Flags given on the command line win over the file.
type Config struct {
	// Role is all (default), controlplane, router or nodeagent.
	Role string `yaml:"role"`
	// DataDir holds the embedded store, the API token, logs and the private
	// containerd. Default /var/lib/ebb.
	DataDir string `yaml:"dataDir"`
	// APIAddr is the control-plane API address. Default 127.0.0.1:8090.
	APIAddr string `yaml:"apiAddr"`
	// HTTPAddr is the router's listen address. Default :8080.
	HTTPAddr string `yaml:"httpAddr"`
	// MaxConnsPerIP bounds the router's concurrent connections from one
	// client IP address; past it a new connection is answered 429 and
	// closed. Default 0: no bound, right behind a load balancer or NAT,
	// where clients share an address. The router's total is capped by the
	// open-file limit whatever this says.
	MaxConnsPerIP int `yaml:"maxConnsPerIP"`
	// MaxRetries is how many other replicas the router and the activator
	// try for one request after the replica it was sent to took no byte of
	// it (refused the connection). Default 2 (exchange.DefaultMaxRetries);
	// 1 to 16. A request that reached a replica is never sent again.
	MaxRetries int `yaml:"maxRetries"`
	// StickyCookie, when set, names a cookie the router sets on a client's
	// first response to pin it to the revision it got, for as long as that
	// revision takes traffic: during a canary a user stays on one side.
	// Default off.
	StickyCookie string `yaml:"stickyCookie"`
	// StickyHeader, when set, names a request header (a user id, say)
	// whose value the router hashes onto the traffic split, so one value
	// always lands on the same revision while the split holds. Default off.
	StickyHeader string `yaml:"stickyHeader"`
	// AccessLog is where the router writes one JSON line per request:
	// "stdout", an absolute file path (rotated at 100 MB, 5 kept), or
	// empty for none. Router roles; `ebb logs --access` reads the router's
	// in-memory copy of the recent lines only while it is set.
	AccessLog string `yaml:"accessLog"`
	// AccessLogSample is the fraction of access lines written, in (0, 1];
	// errors (5xx) and cold starts are always written. Default 1.
	AccessLogSample float64 `yaml:"accessLogSample"`
	// OTLPEndpoint, when set, is the OTLP/HTTP receiver (such as
	// http://collector:4318) the router sends request traces to. Empty:
	// no tracing, at no cost.
	OTLPEndpoint string `yaml:"otlpEndpoint"`
	// Store is "embedded" (default: bbolt at <data-dir>/state.db) or a
	// redis://host:port/db URL.
	Store string `yaml:"store"`
	// ContainerdAddress is the containerd socket to use. If nothing answers
	// there, ebbd starts a private containerd under <data-dir>/containerd.
	// Default /run/containerd/containerd.sock.
	ContainerdAddress string `yaml:"containerdAddress"`
	// Domain is the routing domain: {fn}.{domain}. Default localhost.
	Domain string `yaml:"domain"`
	// NodeName names this node in the store. Default the hostname.
	NodeName string `yaml:"nodeName"`
	// AutoscalerURL is where a router-only or nodeagent-only process sends
	// stats and activations: the control planes' API URLs, comma-separated,
	// each of which gets every report; empty in the all role.
	AutoscalerURL string `yaml:"autoscalerURL"`
	// MetricsAddr serves /healthz, /readyz and /metrics for roles without the
	// API. Default 127.0.0.1:9090.
	MetricsAddr string `yaml:"metricsAddr"`
	// LogLevel is debug, info (default), warn or error.
	LogLevel string `yaml:"logLevel"`
	// EBPF is auto (default: on when privileges allow), on (fail without it)
	// or off.
	EBPF string `yaml:"ebpf"`
	// VIPPrefix is the IPv4 range in 127.0.0.0/8 that function VIPs are
	// allocated from. Every node of a cluster must use the same one.
	// Default 127.77.0.0/16.
	VIPPrefix string `yaml:"vipPrefix"`
	// HostIP is the address this node's replicas are published at, which
	// routers on other machines must be able to reach. Default 127.0.0.1,
	// right for one machine.
	HostIP string `yaml:"hostIP"`
	// ReplicaPorts is the host port range replicas listen on, "MIN-MAX".
	// Default 20000-29999, below Linux's ephemeral range.
	ReplicaPorts string `yaml:"replicaPorts"`
	// Isolation is on (default: each replica in its own network namespace
	// on Bridge, with an address from ReplicaCIDR, and its own user
	// namespace) or off (replicas share the host's network and user
	// namespaces, for benchmarks and machines without the privileges).
	Isolation string `yaml:"isolation"`
	// Bridge is the node bridge replicas' links hang off. Default ebb0.
	Bridge string `yaml:"bridge"`
	// ReplicaCIDR is the IPv4 range of replica addresses on Bridge: its
	// first address is the node's (the gateway), and the replica with port
	// p gets the (2 + p - min port)th, so it must hold the whole port
	// range. Default 10.213.0.0/18.
	ReplicaCIDR string `yaml:"replicaCIDR"`
	// Runc is the OCI runtime binary containerd's runc shim runs for
	// replicas: "auto" (default: ebb-runc beside ebbd when it is there,
	// else runc), "runc", or the absolute path of ebb-runc.
	Runc string `yaml:"runc"`
	// MaxSpoolBytes bounds the bytes that all image uploads in progress
	// hold in <data-dir>/spool together. Default 4 GiB
	// (controlplane.DefaultMaxSpoolBytes).
	MaxSpoolBytes int64 `yaml:"maxSpoolBytes"`
	// SecretsKeyFile is the key-encryption key of secret objects: 32 random
	// bytes, mode 0600 (more during a rotation). Empty means
	// <data-dir>/secrets.key, made at first start. Control-plane roles only.
	SecretsKeyFile string `yaml:"secretsKeyFile"`
	// RevisionHistory is how many unrouted revisions each function keeps,
	// the newest, when the control plane collects revision garbage.
	// Default 10 (controlplane.DefaultRevisionHistory); at least 1.
	RevisionHistory int `yaml:"revisionHistory"`
	// RevisionMinAge keeps unrouted revisions younger than it past
	// RevisionHistory. Default 1h; must be positive.
	RevisionMinAge time.Duration `yaml:"revisionMinAge"`
	// RevisionGCInterval is how often the control plane collects revision
	// garbage. Default 1m (controlplane.DefaultRevisionGCEvery); must be
	// positive. Tests shorten it.
	RevisionGCInterval time.Duration `yaml:"revisionGCInterval"`
	// RolloutLease is how long a control plane's claim on a rollout lasts
	// unrenewed: the longest a dead control plane's rollouts wait for
	// another to drive them. Default 15s.
	RolloutLease time.Duration `yaml:"rolloutLease"`
	// InvokerVisibilityMargin is added to a function's timeout for an
	// async delivery's claim: how long past the timeout a delivery cut
	// short by a crash waits before another worker delivers it again.
	// Default 30s (invoker.DefaultVisibilityMargin); 1s to 1h. Tests
	// shorten it.
	InvokerVisibilityMargin time.Duration `yaml:"invokerVisibilityMargin"`
	// InvokerCallbackAllow are the loopback or private ranges (CIDRs,
	// comma-separated) async callbacks may reach besides public addresses.
	// Link-local (cloud metadata), unspecified and multicast addresses are
	// refused whatever it says. Default none.
	InvokerCallbackAllow string `yaml:"invokerCallbackAllow"`
	// PrometheusURL is the Prometheus that rollouts' PromQL checks query;
	// without it a policy's checks have no value, so its steps wait and,
	// at their deadline, fail.
	PrometheusURL string `yaml:"prometheusURL"`

	// TLSListen is where the router terminates TLS (SNI, TLS 1.2 at
	// least). Empty (default): no TLS. Needs TLSCertDir, ACMEDirectory or
	// both.
	TLSListen string `yaml:"tlsListen"`
	// TLSCertDir holds certificate/key pairs (NAME.crt with NAME.key, or
	// NAME.pem with both), picked by SNI and reloaded when the directory
	// changes; the pair called default answers names no pair holds.
	TLSCertDir string `yaml:"tlsCertDir"`
	// ACMEDirectory, when set, is the ACME directory URL certificates for
	// mapped custom domains are issued from (Let's Encrypt:
	// https://acme-v02.api.letsencrypt.org/directory). They are cached in
	// <data-dir>/acme and renewed before they expire.
	ACMEDirectory string `yaml:"acmeDirectory"`
	// ACMEEmail is the ACME account's contact; optional.
	ACMEEmail string `yaml:"acmeEmail"`
	// ACMECAFile holds PEM roots that the ACME directory's HTTPS is trusted
	// by beside the system's (a private CA).
	ACMECAFile string `yaml:"acmeCAFile"`
	// HTTPSRedirect redirects every plain-HTTP request for a routed host
	// to HTTPS (308); a domain mapping can ask for it for its host alone.
	HTTPSRedirect bool `yaml:"httpsRedirect"`
	// HSTSMaxAge, when positive, adds Strict-Transport-Security with this
	// max-age to HTTPS responses. Default 0: off.
	HSTSMaxAge time.Duration `yaml:"hstsMaxAge"`
	// NodeLeaseTTL is how long a node agent's liveness lease lasts
	// unrenewed: how soon routers stop using a dead node and its replicas
	// are placed elsewhere. Default 2s; 1s to 1m.
	NodeLeaseTTL time.Duration `yaml:"nodeLeaseTTL"`
	// NodeLeaseRenew is how often a node agent renews its lease; under
	// half of NodeLeaseTTL. Default 500ms.
	NodeLeaseRenew time.Duration `yaml:"nodeLeaseRenew"`
	// LeaderLeaseTTL is how long the leading control plane's lease lasts
	// unrenewed: the longest the cluster goes without a leader after the
	// leader dies. Default 3s; 1s to 1m.
	LeaderLeaseTTL time.Duration `yaml:"leaderLeaseTTL"`
	// BackupInterval is how often a control plane writes a backup of the
	// cluster's state (package backup) to BackupDir: the recovery point
	// objective. Default 0: no scheduled backups.
	BackupInterval time.Duration `yaml:"backupInterval"`
	// BackupKeep is how many scheduled backups are kept, the newest.
	// Default 24.
	BackupKeep int `yaml:"backupKeep"`
	// BackupDir holds scheduled backups. Default <data-dir>/backups.
	BackupDir string `yaml:"backupDir"`
	// InsecureRegistries are the image registries (host:port, as image
	// references name them) a node agent pulls from over plain HTTP, as
	// dockerd's insecure-registries; every other is HTTPS. Default none.
	InsecureRegistries []string `yaml:"insecureRegistries"`
	// DockerHubPulls lets a node agent pull docker.io images it lacks
	// from Docker Hub. Default off: an unqualified name ("hello") means
	// an image uploaded to the control plane, and both normalize to
	// docker.io. Other registries are always pulled from.
	DockerHubPulls bool `yaml:"dockerHubPulls"`
}

func defaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		Role:                    RoleAll,
		DataDir:                 "/var/lib/ebb",
		APIAddr:                 "127.0.0.1:8090",
		HTTPAddr:                ":8080",
		Store:                   "embedded",
		ContainerdAddress:       "/run/containerd/containerd.sock",
		Domain:                  "localhost",
		NodeName:                strings.ToLower(host),
		MetricsAddr:             "127.0.0.1:9090",
		LogLevel:                "info",
		EBPF:                    "auto",
		VIPPrefix:               bpf.DefaultVIPPrefix.String(),
		HostIP:                  "127.0.0.1",
		ReplicaPorts:            "20000-29999",
		Isolation:               isolationOn,
		Bridge:                  "ebb0",
		ReplicaCIDR:             "10.213.0.0/18",
		Runc:                    runcAuto,
		MaxSpoolBytes:           controlplane.DefaultMaxSpoolBytes,
		RevisionHistory:         controlplane.DefaultRevisionHistory,
		RevisionMinAge:          controlplane.DefaultRevisionMinAge,
		RolloutLease:            15 * time.Second,
		InvokerVisibilityMargin: invoker.DefaultVisibilityMargin,
		MaxRetries:              exchange.DefaultMaxRetries,
		BackupKeep:              24,

		RevisionGCInterval: controlplane.DefaultRevisionGCEvery,
		NodeLeaseTTL:       liveness.DefaultLeaseTTL,
		NodeLeaseRenew:     liveness.DefaultRenewEvery,
		LeaderLeaseTTL:     leader.DefaultTTL,
	}
}

// parseConfig reads flags and the optional --config file into a validated Config.
func parseConfig(args []string, stderr io.Writer) (Config, error) {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("ebbd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "YAML config file; flags override it")
	fs.StringVar(&cfg.Role, "role", cfg.Role, "role to run: all, controlplane, router or nodeagent")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "directory for state, token, logs and the private containerd")
	fs.StringVar(&cfg.APIAddr, "api-addr", cfg.APIAddr, "control-plane API listen address")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", cfg.HTTPAddr, "router listen address")
	fs.IntVar(&cfg.MaxRetries, "max-retries", cfg.MaxRetries, "other replicas tried for a request the first one took no byte of (1-16)")
	fs.IntVar(&cfg.MaxConnsPerIP, "max-conns-per-ip", cfg.MaxConnsPerIP, "router connections allowed from one client IP address; 0: no bound")
	fs.StringVar(&cfg.StickyCookie, "sticky-cookie", cfg.StickyCookie, "cookie that pins a client to the revision it first got during a split; empty: off")
	fs.StringVar(&cfg.StickyHeader, "sticky-header", cfg.StickyHeader, "request header whose value keeps a client on one revision of a split; empty: off")
	fs.StringVar(&cfg.Store, "store", cfg.Store, `state store: "embedded", redis://[:password@]host:port/db or redis-sentinel://[:password@]sentinel:26379[,...]/master`)
	fs.StringVar(&cfg.AccessLog, "access-log", cfg.AccessLog, "router access log: stdout, an absolute file path (rotated), or empty for none")
	fs.Float64Var(&cfg.AccessLogSample, "access-log-sample", cfg.AccessLogSample, "fraction of access lines written, in (0, 1]; errors and cold starts always are")
	fs.StringVar(&cfg.OTLPEndpoint, "otlp-endpoint", cfg.OTLPEndpoint, "OTLP/HTTP URL the router sends request traces to (such as http://127.0.0.1:4318); empty: no tracing")
	fs.StringVar(&cfg.ContainerdAddress, "containerd-address", cfg.ContainerdAddress, "containerd socket; a private containerd starts if none answers")
	fs.StringVar(&cfg.Domain, "domain", cfg.Domain, "routing domain for function URLs")
	fs.StringVar(&cfg.NodeName, "node-name", cfg.NodeName, "name of this node")
	fs.StringVar(&cfg.AutoscalerURL, "autoscaler-url", cfg.AutoscalerURL, "autoscaler URL for router and nodeagent roles on other machines; several control planes' URLs comma-separated")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", cfg.MetricsAddr, "health and metrics address for roles without the API")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	fs.StringVar(&cfg.EBPF, "ebpf", cfg.EBPF, "eBPF acceleration: auto, on or off")
	fs.StringVar(&cfg.VIPPrefix, "vip-prefix", cfg.VIPPrefix, "IPv4 range in 127.0.0.0/8 for function VIPs; the same on every node")
	fs.StringVar(&cfg.HostIP, "host-ip", cfg.HostIP, "address replicas are published at; routers on other machines must reach it")
	fs.StringVar(&cfg.ReplicaPorts, "replica-ports", cfg.ReplicaPorts, "host port range for replicas, MIN-MAX")
	fs.StringVar(&cfg.Isolation, "isolation", cfg.Isolation, "on: each replica in its own network and user namespace; off: replicas share the host's")
	fs.StringVar(&cfg.Bridge, "bridge", cfg.Bridge, "node bridge for replica networks (with --isolation on)")
	fs.StringVar(&cfg.ReplicaCIDR, "replica-cidr", cfg.ReplicaCIDR, "IPv4 range of replica addresses on the bridge; must hold the replica port range")
	fs.StringVar(&cfg.Runc, "runc", cfg.Runc, "OCI runtime the containerd shim runs: auto (ebb-runc beside ebbd, else runc), runc, or a path to ebb-runc")
	fs.StringVar(&cfg.SecretsKeyFile, "secrets-key-file", cfg.SecretsKeyFile, "key-encryption key of secret objects, 32 random bytes with mode 0600 (default <data-dir>/secrets.key, created at first start)")
	fs.IntVar(&cfg.RevisionHistory, "revision-history", cfg.RevisionHistory, "unrouted revisions each function keeps, the newest; older ones are garbage-collected")
	fs.DurationVar(&cfg.RevisionMinAge, "revision-min-age", cfg.RevisionMinAge, "unrouted revisions younger than this are kept past --revision-history")
	fs.DurationVar(&cfg.RevisionGCInterval, "revision-gc-interval", cfg.RevisionGCInterval, "how often unrouted revisions are garbage-collected")
	fs.DurationVar(&cfg.RolloutLease, "rollout-lease", cfg.RolloutLease, "how long a control plane's claim on a rollout lasts unrenewed; another takes over after it")
	fs.StringVar(&cfg.InvokerCallbackAllow, "invoker-callback-allow", cfg.InvokerCallbackAllow, "loopback or private CIDRs, comma-separated, that async callbacks may reach besides public addresses (link-local, unspecified and multicast never)")
	fs.DurationVar(&cfg.InvokerVisibilityMargin, "invoker-visibility-margin", cfg.InvokerVisibilityMargin, "added to a function's timeout for an async delivery's claim: how long a delivery a crash cut short waits before it is delivered again")
	fs.StringVar(&cfg.PrometheusURL, "prometheus-url", cfg.PrometheusURL, "Prometheus base URL for rollouts' PromQL checks")
	fs.StringVar(&cfg.TLSListen, "tls-listen", cfg.TLSListen, "router TLS listen address; empty: no TLS")
	fs.StringVar(&cfg.TLSCertDir, "tls-cert-dir", cfg.TLSCertDir, "directory of certificate/key pairs (NAME.crt+NAME.key or NAME.pem), picked by SNI, reloaded on change")
	fs.StringVar(&cfg.ACMEDirectory, "acme-directory", cfg.ACMEDirectory, "ACME directory URL to issue certificates for mapped domains from; empty: no ACME")
	fs.StringVar(&cfg.ACMEEmail, "acme-email", cfg.ACMEEmail, "ACME account contact email")
	fs.StringVar(&cfg.ACMECAFile, "acme-ca-file", cfg.ACMECAFile, "PEM roots the ACME directory's HTTPS is trusted by, beside the system's")
	fs.BoolVar(&cfg.HTTPSRedirect, "https-redirect", cfg.HTTPSRedirect, "redirect every plain-HTTP request for a routed host to HTTPS")
	fs.DurationVar(&cfg.HSTSMaxAge, "hsts-max-age", cfg.HSTSMaxAge, "Strict-Transport-Security max-age on HTTPS responses; 0: off")
	fs.DurationVar(&cfg.NodeLeaseTTL, "node-lease-ttl", cfg.NodeLeaseTTL, "how long a node's liveness lease lasts unrenewed; a dead node leaves the routers and its replicas move this soon")
	fs.DurationVar(&cfg.NodeLeaseRenew, "node-lease-renew", cfg.NodeLeaseRenew, "how often a node agent renews its liveness lease; under half of --node-lease-ttl")
	fs.DurationVar(&cfg.LeaderLeaseTTL, "leader-lease-ttl", cfg.LeaderLeaseTTL, "how long the leading control plane's lease lasts unrenewed; another leads this soon after it dies")
	fs.DurationVar(&cfg.BackupInterval, "backup-interval", cfg.BackupInterval, "how often a control plane writes a backup to --backup-dir (the recovery point); 0: never")
	fs.IntVar(&cfg.BackupKeep, "backup-keep", cfg.BackupKeep, "scheduled backups kept, the newest")
	fs.StringVar(&cfg.BackupDir, "backup-dir", cfg.BackupDir, "directory of scheduled backups (default <data-dir>/backups)")
	fs.Func("insecure-registry", "image registry (host:port) pulled from over plain HTTP; repeat for several", func(v string) error {
		cfg.InsecureRegistries = append(cfg.InsecureRegistries, v)
		return nil
	})
	fs.BoolVar(&cfg.DockerHubPulls, "docker-hub-pulls", cfg.DockerHubPulls, "pull docker.io images a node lacks from Docker Hub")
	fs.Int64Var(&cfg.MaxSpoolBytes, "max-spool-bytes", cfg.MaxSpoolBytes, "bytes all image uploads in progress may hold in <data-dir>/spool together")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *configPath != "" {
		fileCfg := defaultConfig()
		if err := readConfigFile(*configPath, &fileCfg); err != nil {
			return Config{}, err
		}
		// Flags set on the command line win over the file.
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		cfg = mergeFlags(fileCfg, cfg, set)
	}
	if cfg.DataDir != "" {
		abs, err := filepath.Abs(cfg.DataDir)
		if err != nil {
			return Config{}, fmt.Errorf("--data-dir %q: %w", cfg.DataDir, err)
		}
		cfg.DataDir = abs
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

func readConfigFile(path string, cfg *Config) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// mergeFlags takes each explicitly set flag's value from flags over file.
func mergeFlags(file, flags Config, set map[string]bool) Config {
	pick := func(name string, dst *string, v string) {
		if set[name] {
			*dst = v
		}
	}
	pick("role", &file.Role, flags.Role)
	pick("data-dir", &file.DataDir, flags.DataDir)
	pick("api-addr", &file.APIAddr, flags.APIAddr)
	pick("http-addr", &file.HTTPAddr, flags.HTTPAddr)
	if set["max-conns-per-ip"] {
		file.MaxConnsPerIP = flags.MaxConnsPerIP
	}
	if set["max-retries"] {
		file.MaxRetries = flags.MaxRetries
	}
	pick("sticky-cookie", &file.StickyCookie, flags.StickyCookie)
	pick("sticky-header", &file.StickyHeader, flags.StickyHeader)
	pick("access-log", &file.AccessLog, flags.AccessLog)
	if set["access-log-sample"] {
		file.AccessLogSample = flags.AccessLogSample
	}
	pick("otlp-endpoint", &file.OTLPEndpoint, flags.OTLPEndpoint)
	pick("store", &file.Store, flags.Store)
	pick("containerd-address", &file.ContainerdAddress, flags.ContainerdAddress)
	pick("domain", &file.Domain, flags.Domain)
	pick("node-name", &file.NodeName, flags.NodeName)
	pick("autoscaler-url", &file.AutoscalerURL, flags.AutoscalerURL)
	pick("metrics-addr", &file.MetricsAddr, flags.MetricsAddr)
	pick("log-level", &file.LogLevel, flags.LogLevel)
	pick("ebpf", &file.EBPF, flags.EBPF)
	pick("vip-prefix", &file.VIPPrefix, flags.VIPPrefix)
	pick("host-ip", &file.HostIP, flags.HostIP)
	pick("replica-ports", &file.ReplicaPorts, flags.ReplicaPorts)
	pick("isolation", &file.Isolation, flags.Isolation)
	pick("bridge", &file.Bridge, flags.Bridge)
	pick("replica-cidr", &file.ReplicaCIDR, flags.ReplicaCIDR)
	pick("runc", &file.Runc, flags.Runc)
	pick("secrets-key-file", &file.SecretsKeyFile, flags.SecretsKeyFile)
	pick("prometheus-url", &file.PrometheusURL, flags.PrometheusURL)
	if set["revision-history"] {
		file.RevisionHistory = flags.RevisionHistory
	}
	if set["revision-min-age"] {
		file.RevisionMinAge = flags.RevisionMinAge
	}
	if set["revision-gc-interval"] {
		file.RevisionGCInterval = flags.RevisionGCInterval
	}
	if set["rollout-lease"] {
		file.RolloutLease = flags.RolloutLease
	}
	if set["invoker-visibility-margin"] {
		file.InvokerVisibilityMargin = flags.InvokerVisibilityMargin
	}
	if set["invoker-callback-allow"] {
		file.InvokerCallbackAllow = flags.InvokerCallbackAllow
	}
	if set["max-spool-bytes"] {
		file.MaxSpoolBytes = flags.MaxSpoolBytes
	}
	pick("tls-listen", &file.TLSListen, flags.TLSListen)
	pick("tls-cert-dir", &file.TLSCertDir, flags.TLSCertDir)
	pick("acme-directory", &file.ACMEDirectory, flags.ACMEDirectory)
	pick("acme-email", &file.ACMEEmail, flags.ACMEEmail)
	pick("acme-ca-file", &file.ACMECAFile, flags.ACMECAFile)
	if set["https-redirect"] {
		file.HTTPSRedirect = flags.HTTPSRedirect
	}
	if set["hsts-max-age"] {
		file.HSTSMaxAge = flags.HSTSMaxAge
	}
	if set["node-lease-ttl"] {
		file.NodeLeaseTTL = flags.NodeLeaseTTL
	}
	if set["node-lease-renew"] {
		file.NodeLeaseRenew = flags.NodeLeaseRenew
	}
	if set["leader-lease-ttl"] {
		file.LeaderLeaseTTL = flags.LeaderLeaseTTL
	}
	if set["backup-interval"] {
		file.BackupInterval = flags.BackupInterval
	}
	if set["backup-keep"] {
		file.BackupKeep = flags.BackupKeep
	}
	pick("backup-dir", &file.BackupDir, flags.BackupDir)
	if set["insecure-registry"] {
		file.InsecureRegistries = flags.InsecureRegistries
	}
	if set["docker-hub-pulls"] {
		file.DockerHubPulls = flags.DockerHubPulls
	}
	return file
}

// Validate reports the first invalid setting in words an operator can act on.
func (c Config) Validate() error {
	switch c.Role {
	case RoleAll, RoleControlPlane, RoleRouter, RoleNodeAgent:
	default:
		return fmt.Errorf("--role %q: must be all, controlplane, router or nodeagent", c.Role)
	}
	if !filepath.IsAbs(c.DataDir) {
		return fmt.Errorf("--data-dir %q: must be an absolute directory path", c.DataDir)
	}
	for flagName, addr := range map[string]string{"api-addr": c.APIAddr, "http-addr": c.HTTPAddr, "metrics-addr": c.MetricsAddr} {
		if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
			return fmt.Errorf("--%s %q: must be host:port", flagName, addr)
		}
	}
	for _, r := range c.InsecureRegistries {
		if r == "" || strings.ContainsAny(r, "/ \t") {
			return fmt.Errorf("--insecure-registry %q: must be a registry host or host:port, without a scheme or path", r)
		}
	}
	if c.MaxConnsPerIP < 0 {
		return fmt.Errorf("--max-conns-per-ip %d: must not be negative", c.MaxConnsPerIP)
	}
	if err := exchange.ValidateMaxRetries(c.MaxRetries); err != nil || c.MaxRetries == 0 {
		return fmt.Errorf("--max-retries %d: must be between 1 and 16", c.MaxRetries)
	}
	if err := c.validateTLS(); err != nil {
		return err
	}
	if err := c.routerConfig().Validate(); err != nil {
		return fmt.Errorf("--sticky-cookie %q, --sticky-header %q: %w", c.StickyCookie, c.StickyHeader, err)
	}
	if c.Store != "embedded" {
		// The URL is not echoed: it may carry the password.
		if _, err := redisconn.Parse(c.Store); err != nil {
			return fmt.Errorf("--store: must be \"embedded\" or a redis:// or redis-sentinel:// URL: %w", err)
		}
	}
	if err := c.accessLogConfig().Validate(); err != nil {
		return fmt.Errorf("--access-log %q, --access-log-sample %v: %w", c.AccessLog, c.AccessLogSample, err)
	}
	if c.OTLPEndpoint != "" {
		if err := (otlp.Config{Endpoint: c.OTLPEndpoint}).Validate(); err != nil {
			return fmt.Errorf("--otlp-endpoint: %w", err)
		}
	}
	if c.Store == "embedded" && c.Role != RoleAll {
		return fmt.Errorf("--role %s needs a shared store: use --store redis://...", c.Role)
	}
	if c.ContainerdAddress == "" {
		return errors.New("--containerd-address must not be empty")
	}
	for _, label := range strings.Split(c.Domain, ".") {
		if err := api.ValidateName("--domain", label); err != nil {
			return fmt.Errorf("--domain %q: each part must be a DNS label", c.Domain)
		}
	}
	if err := api.ValidateName("--node-name", c.NodeName); err != nil {
		return err
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("--log-level %q: must be debug, info, warn or error", c.LogLevel)
	}
	if c.RevisionHistory < 1 {
		return fmt.Errorf("--revision-history %d: must be at least 1", c.RevisionHistory)
	}
	if c.RevisionMinAge <= 0 {
		return fmt.Errorf("--revision-min-age %s: must be positive (1s keeps nothing for its age)", c.RevisionMinAge)
	}
	if c.RevisionGCInterval <= 0 {
		return fmt.Errorf("--revision-gc-interval %s: must be positive", c.RevisionGCInterval)
	}
	if c.NodeLeaseTTL < time.Second || c.NodeLeaseTTL > time.Minute {
		return fmt.Errorf("--node-lease-ttl %s: must be between 1s and 1m", c.NodeLeaseTTL)
	}
	if c.NodeLeaseRenew <= 0 || 2*c.NodeLeaseRenew >= c.NodeLeaseTTL {
		return fmt.Errorf("--node-lease-renew %s: must be positive and under half of --node-lease-ttl %s", c.NodeLeaseRenew, c.NodeLeaseTTL)
	}
	if c.LeaderLeaseTTL < time.Second || c.LeaderLeaseTTL > time.Minute {
		return fmt.Errorf("--leader-lease-ttl %s: must be between 1s and 1m", c.LeaderLeaseTTL)
	}
	if c.PrometheusURL != "" {
		if err := (promql.Config{URL: c.PrometheusURL}).Validate(); err != nil {
			return fmt.Errorf("--prometheus-url: %w", err)
		}
	}
	if c.RolloutLease < time.Second || c.RolloutLease > time.Hour {
		return fmt.Errorf("--rollout-lease %s: must be 1s to 1h", c.RolloutLease)
	}
	if _, err := callbackurl.Parse(c.InvokerCallbackAllow); err != nil {
		return fmt.Errorf("--invoker-callback-allow %q: %v", c.InvokerCallbackAllow, err)
	}
	if c.InvokerVisibilityMargin < time.Second || c.InvokerVisibilityMargin > time.Hour {
		return fmt.Errorf("--invoker-visibility-margin %s: must be 1s to 1h", c.InvokerVisibilityMargin)
	}
	if err := c.backupSchedule().Validate(); err != nil {
		return fmt.Errorf("--backup-interval %s, --backup-keep %d, --backup-dir %q: %w", c.BackupInterval, c.BackupKeep, c.BackupDir, err)
	}
	if c.MaxSpoolBytes <= 0 {
		return fmt.Errorf("--max-spool-bytes %d: must be positive", c.MaxSpoolBytes)
	}
	if c.Runc != runcAuto && c.Runc != runcStock && !filepath.IsAbs(c.Runc) {
		return fmt.Errorf("--runc %q: must be auto, runc or an absolute path", c.Runc)
	}
	switch c.EBPF {
	case "auto", "on", "off":
	default:
		return fmt.Errorf("--ebpf %q: must be auto, on or off", c.EBPF)
	}
	if ip := net.ParseIP(c.HostIP); ip == nil || ip.To4() == nil {
		return fmt.Errorf("--host-ip %q: must be an IPv4 address", c.HostIP)
	}
	if _, _, err := c.replicaPortRange(); err != nil {
		return err
	}
	if err := c.validateIsolation(); err != nil {
		return err
	}
	prefix, err := netip.ParsePrefix(c.VIPPrefix)
	if err != nil {
		return fmt.Errorf("--vip-prefix %q: must be an IPv4 prefix such as 127.77.0.0/16", c.VIPPrefix)
	}
	if err := (bpf.Options{VIPPrefix: prefix}).Validate(); err != nil {
		return fmt.Errorf("--vip-prefix: %w", err)
	}
	return nil
}

// routerConfig is the router's share of the configuration.
// callbackPolicy is InvokerCallbackAllow, validated at start.
func (c Config) callbackPolicy() callbackurl.Policy {
	p, _ := callbackurl.Parse(c.InvokerCallbackAllow)
	return p
}

func (c Config) routerConfig() router.Config {
	return router.Config{
		CallbackPolicy: c.callbackPolicy(),
		Addr:           c.HTTPAddr,
		Domain:         c.Domain,
		MaxConnsPerIP:  c.MaxConnsPerIP,
		MaxRetries:     c.MaxRetries,
		StickyCookie:   c.StickyCookie,
		StickyHeader:   c.StickyHeader,
		TLSAddr:        c.TLSListen,
		HTTPSRedirect:  c.HTTPSRedirect,
		HSTSMaxAge:     c.HSTSMaxAge,
	}
}

// accessLogConfig is the router's access log's share of the configuration.
func (c Config) accessLogConfig() accesslog.Config {
	return accesslog.Config{Output: c.AccessLog, SampleRate: c.AccessLogSample}
}

// replicaPortRange parses ReplicaPorts.
func (c Config) replicaPortRange() (lo, hi int, err error) {
	a, b, ok := strings.Cut(c.ReplicaPorts, "-")
	lo, err1 := strconv.Atoi(a)
	hi, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || lo < 1024 || hi > 65535 || lo > hi {
		return 0, 0, fmt.Errorf("--replica-ports %q: must be MIN-MAX within 1024-65535", c.ReplicaPorts)
	}
	return lo, hi, nil
}
