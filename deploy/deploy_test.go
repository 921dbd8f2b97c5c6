package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/ebbrun/ebb/internal/redisconn"
)

// deployFiles lists the files under deploy/ whose name ends in one of exts.
func deployFiles(t *testing.T, exts ...string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		for _, ext := range exts {
			if !d.IsDir() && strings.HasSuffix(path, ext) {
				files = append(files, filepath.ToSlash(path))
			}
		}
		return nil
	})
	require.NoError(t, err)
	sort.Strings(files)
	return files
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

// decodeYAML decodes path strictly: unknown fields are an error.
func decodeYAML(t *testing.T, path string, v any) {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(readFile(t, path)))
	dec.KnownFields(true)
	require.NoError(t, dec.Decode(v), path)
}

func TestEveryYAMLAndJSONFileParses(t *testing.T) {
	yamls := deployFiles(t, ".yml", ".yaml")
	jsons := deployFiles(t, ".json")
	// The files the README promises; a rename must update both.
	for _, want := range []string{
		"config/ebbd.yaml", "config/controlplane.yaml", "config/router.yaml", "config/nodeagent.yaml",
		"prometheus/prometheus.yml", "prometheus/alerts.yml", "prometheus/alerts_test.yml",
	} {
		assert.Contains(t, yamls, want)
	}
	assert.Contains(t, jsons, "grafana/ebb-dashboard.json")
	for _, path := range yamls {
		t.Run(path, func(t *testing.T) {
			dec := yaml.NewDecoder(bytes.NewReader(readFile(t, path)))
			docs := 0
			for {
				var n yaml.Node
				err := dec.Decode(&n)
				if errors.Is(err, io.EOF) {
					break
				}
				require.NoError(t, err)
				docs++
			}
			assert.Equal(t, 1, docs, "one YAML document per file")
		})
	}
	for _, path := range jsons {
		t.Run(path, func(t *testing.T) {
			var v any
			dec := json.NewDecoder(bytes.NewReader(readFile(t, path)))
			require.NoError(t, dec.Decode(&v))
			_, err := dec.Token()
			assert.ErrorIs(t, err, io.EOF, "nothing may follow the JSON value")
		})
	}
}

// ruleFile is the Prometheus rule file format (the parts ebb uses).
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// ruleTestFile is promtool's rule unit test format (the parts ebb uses).
type ruleTestFile struct {
	RuleFiles          []string `yaml:"rule_files"`
	EvaluationInterval string   `yaml:"evaluation_interval"`
	Tests              []struct {
		Interval    string `yaml:"interval"`
		InputSeries []struct {
			Series string `yaml:"series"`
			Values string `yaml:"values"`
		} `yaml:"input_series"`
		AlertRuleTests []struct {
			EvalTime  string `yaml:"eval_time"`
			Alertname string `yaml:"alertname"`
			ExpAlerts []struct {
				ExpLabels      map[string]string `yaml:"exp_labels"`
				ExpAnnotations map[string]string `yaml:"exp_annotations"`
			} `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// dashboard is the Grafana dashboard JSON (the parts the tests check).
type dashboard struct {
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		RefID        string `json:"refId"`
		Expr         string `json:"expr"`
		LegendFormat string `json:"legendFormat"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	var d dashboard
	require.NoError(t, json.Unmarshal(readFile(t, "grafana/ebb-dashboard.json"), &d))
	return d
}

// allPanels flattens rows (collapsed rows hold their panels inside).
func (d dashboard) allPanels() []panel {
	var out []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// deployExprs gathers every PromQL expression of the alerts, the alert tests and
// the dashboard.
func deployExprs(t *testing.T) []promExpr {
	t.Helper()
	var out []promExpr
	var rules ruleFile
	decodeYAML(t, "prometheus/alerts.yml", &rules)
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			var texts []string
			for _, v := range r.Annotations {
				texts = append(texts, v)
			}
			out = append(out, promExpr{where: "alerts.yml " + r.Alert, expr: r.Expr, output: annotationLabels(texts...)})
		}
	}
	var tests ruleTestFile
	decodeYAML(t, "prometheus/alerts_test.yml", &tests)
	for i, tc := range tests.Tests {
		for _, s := range tc.InputSeries {
			out = append(out, promExpr{where: "alerts_test.yml test " + strconv.Itoa(i+1) + " series", expr: s.Series})
		}
	}
	d := loadDashboard(t)
	for _, p := range d.allPanels() {
		for _, tg := range p.Targets {
			out = append(out, promExpr{
				where:  "ebb-dashboard.json panel " + p.Title + " " + tg.RefID,
				expr:   tg.Expr,
				output: legendLabels(tg.LegendFormat),
			})
		}
	}
	for _, v := range d.Templating.List {
		if v.Definition != "" {
			out = append(out, promExpr{where: "ebb-dashboard.json variable " + v.Name, expr: v.Definition})
		}
	}
	return out
}

func TestMetricsAndLabelsExistInGoSources(t *testing.T) {
	defs := goMetrics(t)
	// Sanity: the scanner must see both ways metrics are defined, or the
	// checks below would pass for the wrong reason.
	for _, name := range []string{"ebb_router_requests_total", "ebb_nodeagent_start_phase_seconds", "ebb_autoscaler_observed"} {
		require.Contains(t, defs, name, "the Go source scanner no longer finds %s", name)
	}
	assert.True(t, defs["ebb_nodeagent_start_phase_seconds"].histogram)
	assert.Equal(t, map[string]bool{"namespace": true, "function": true, "revision": true, "window": true}, defs["ebb_autoscaler_observed"].labels)
	assert.Equal(t, map[string]bool{"namespace": true, "function": true, "revision": true, "code": true}, defs["ebb_router_requests_total"].labels)

	exprs := deployExprs(t)
	require.NotEmpty(t, exprs)
	used := map[string]bool{}
	for _, pe := range exprs {
		for _, problem := range checkExpr(defs, pe) {
			t.Error(problem)
		}
		for _, name := range refRE.FindAllString(pe.expr, -1) {
			used[name] = true
		}
	}
	// label_values(metric, label) in dashboard variables.
	for _, pe := range exprs {
		for _, m := range labelValRE.FindAllStringSubmatch(pe.expr, -1) {
			def, _, ok := resolveMetric(defs, m[1])
			if ok && def.labelsKnown && !def.labels[m[2]] && !targetLabels[m[2]] {
				t.Errorf("%s: %s has no label %q", pe.where, m[1], m[2])
			}
		}
	}
	t.Logf("%d expressions use %d distinct ebb_* series names; the Go sources define %d metrics", len(exprs), len(used), len(defs))
}

func TestCheckExprCatchesDrift(t *testing.T) {
	defs := map[string]*metricDef{
		"ebb_x_total":   {labels: map[string]bool{"function": true}, labelsKnown: true},
		"ebb_y_seconds": {labels: map[string]bool{"phase": true}, labelsKnown: true, histogram: true},
		"ebb_z":         {labels: map[string]bool{}, labelsKnown: false},
	}
	tests := []struct {
		name     string
		pe       promExpr
		problems int
	}{
		{"known metric and label", promExpr{expr: `sum by (function) (rate(ebb_x_total{function="a"}[5m]))`, output: []string{"function"}}, 0},
		{"unknown metric", promExpr{expr: `rate(ebb_gone_total[5m])`}, 1},
		{"unknown selector label", promExpr{expr: `ebb_x_total{revision="r"}`}, 1},
		{"unknown grouping label", promExpr{expr: `sum by (revision) (ebb_x_total)`}, 1},
		{"unknown legend label", promExpr{expr: `ebb_x_total`, output: []string{"code"}}, 1},
		{"target labels are fine", promExpr{expr: `sum by (instance, job) (ebb_x_total{instance="i"})`}, 0},
		{"histogram bucket with le", promExpr{expr: `histogram_quantile(0.9, sum by (phase, le) (rate(ebb_y_seconds_bucket[5m])))`}, 0},
		{"le only on buckets", promExpr{expr: `ebb_y_seconds_sum{le="1"}`}, 1},
		{"no bucket on a counter", promExpr{expr: `ebb_x_total_bucket`}, 1},
		{"unknown labels pass", promExpr{expr: `sum by (anything) (ebb_z)`}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Len(t, checkExpr(defs, tt.pe), tt.problems, "%v", checkExpr(defs, tt.pe))
		})
	}
}

func TestAlertRules(t *testing.T) {
	var rules ruleFile
	decodeYAML(t, "prometheus/alerts.yml", &rules)
	seen := map[string]bool{}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			t.Run(r.Alert, func(t *testing.T) {
				require.NotEmpty(t, r.Alert, "group %s: every rule here is an alert", g.Name)
				assert.False(t, seen[r.Alert], "duplicate alert name")
				seen[r.Alert] = true
				assert.True(t, strings.HasPrefix(r.Alert, "Ebb"), "alert names start with Ebb")
				assert.NotEmpty(t, strings.TrimSpace(r.Expr))
				assert.NotEmpty(t, r.For, "alerts wait before firing")
				assert.Contains(t, []string{"critical", "warning", "info"}, r.Labels["severity"])
				assert.NotEmpty(t, r.Annotations["summary"])
				assert.NotEmpty(t, r.Annotations["description"])
			})
		}
	}
	assert.GreaterOrEqual(t, n, 10)

	// Every alert the promtool tests name exists.
	var tests ruleTestFile
	decodeYAML(t, "prometheus/alerts_test.yml", &tests)
	assert.Equal(t, []string{"alerts.yml"}, tests.RuleFiles)
	for _, tc := range tests.Tests {
		for _, at := range tc.AlertRuleTests {
			assert.True(t, seen[at.Alertname], "alerts_test.yml tests unknown alert %s", at.Alertname)
		}
	}
}

func TestDashboard(t *testing.T) {
	d := loadDashboard(t)
	assert.NotEmpty(t, d.UID)
	assert.NotEmpty(t, d.Title)
	assert.GreaterOrEqual(t, d.SchemaVersion, 36, "schemaVersion of a current Grafana")
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	assert.Equal(t, "datasource", vars["datasource"], "the data source is a variable, so the dashboard imports anywhere")

	ids := map[int]bool{}
	metrics := map[string]bool{}
	for _, p := range d.allPanels() {
		assert.False(t, ids[p.ID], "panel id %d is used twice", p.ID)
		ids[p.ID] = true
		assert.True(t, p.GridPos.W > 0 && p.GridPos.H > 0 && p.GridPos.X+p.GridPos.W <= 24, "panel %q gridPos %+v", p.Title, p.GridPos)
		if p.Type == "row" {
			continue
		}
		assert.NotEmpty(t, p.Title)
		if assert.NotNil(t, p.Datasource, "panel %q", p.Title) {
			assert.Equal(t, "${datasource}", p.Datasource.UID, "panel %q", p.Title)
		}
		require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
		for _, tg := range p.Targets {
			assert.NotEmpty(t, tg.Expr, "panel %q", p.Title)
			for _, m := range refRE.FindAllString(tg.Expr, -1) {
				metrics[m] = true
			}
		}
	}
	// What the dashboard is for: one panel or more on each of these.
	for _, m := range []string{
		"ebb_router_requests_total", "ebb_router_request_duration_seconds_bucket", "ebb_router_in_flight",
		"ebb_router_cold_starts_total", "ebb_router_cold_start_seconds_bucket",
		"ebb_activator_buffered", "ebb_activator_rejected_total",
		"ebb_autoscaler_desired_replicas", "ebb_autoscaler_ready_replicas", "ebb_autoscaler_panic",
		"ebb_nodeagent_pool_tasks", "ebb_nodeagent_pool_hits_total", "ebb_nodeagent_pool_misses_total",
		"ebb_nodeagent_start_phase_seconds_bucket", "ebb_nodeagent_restarts_total",
	} {
		assert.True(t, metrics[m], "the dashboard has no panel on %s", m)
	}
}

// configFile is one deploy/config YAML file read as key → value, plus the
// keys only mentioned in comments ("# nodeName: ...").
type configFile struct {
	values    map[string]string
	commented map[string]bool
}

var commentedKeyRE = regexp.MustCompile(`(?m)^#\s*([a-zA-Z]+):`)

func readConfig(t *testing.T, path string, known map[string]bool) configFile {
	t.Helper()
	b := readFile(t, path)
	var root yaml.Node
	require.NoError(t, yaml.Unmarshal(b, &root), path)
	require.Len(t, root.Content, 1, path)
	m := root.Content[0]
	require.Equal(t, yaml.MappingNode, m.Kind, "%s: a mapping of keys to values", path)
	cf := configFile{values: map[string]string{}, commented: map[string]bool{}}
	for i := 0; i < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		require.True(t, known[k.Value], "%s:%d: ebbd has no config key %q", path, k.Line, k.Value)
		require.Equal(t, yaml.ScalarNode, v.Kind, "%s:%d: %s must be a string", path, v.Line, k.Value)
		_, dup := cf.values[k.Value]
		require.False(t, dup, "%s: %s twice", path, k.Value)
		cf.values[k.Value] = v.Value
	}
	for _, mm := range commentedKeyRE.FindAllStringSubmatch(string(b), -1) {
		if known[mm[1]] {
			cf.commented[mm[1]] = true
		}
	}
	return cf
}

// configs reads deploy/config/*.yaml, checking every key against cmd/ebbd.
func configs(t *testing.T) (map[string]configFile, ebbdConfig) {
	t.Helper()
	ec := readEbbdConfig(t)
	known := map[string]bool{}
	for _, k := range ec.yamlKeys {
		known[k] = true
	}
	out := map[string]configFile{}
	for _, path := range deployFiles(t, ".yaml") {
		if strings.HasPrefix(path, "config/") {
			out[strings.TrimSuffix(filepath.Base(path), ".yaml")] = readConfig(t, path, known)
		}
	}
	return out, ec
}

func TestConfigFiles(t *testing.T) {
	cfgs, ec := configs(t)
	tests := []struct {
		file string
		role string
	}{
		{"ebbd", "all"},
		{"controlplane", "controlplane"},
		{"router", "router"},
		{"nodeagent", "nodeagent"},
	}
	require.Len(t, cfgs, len(tests), "a new config file needs a row here")
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			c, ok := cfgs[tt.file]
			require.True(t, ok)
			assert.Equal(t, tt.role, c.values["role"])
			store := c.values["store"]
			if tt.role == "all" {
				assert.Equal(t, "embedded", store)
			} else {
				assert.Regexp(t, `^rediss?://`, store, "role %s needs the shared store", tt.role)
				_, err := url.Parse(store)
				assert.NoError(t, err)
				// The shipped password is a placeholder ebbd refuses, so
				// nobody runs a cluster with a password everyone knows.
				_, err = redisconn.Parse(store)
				assert.ErrorContains(t, err, redisconn.Placeholder)
			}
			for _, key := range []string{"apiAddr", "httpAddr", "metricsAddr"} {
				if v, ok := c.values[key]; ok {
					_, port, err := net.SplitHostPort(v)
					assert.NoError(t, err, "%s %q", key, v)
					assert.NotEmpty(t, port, key)
				}
			}
			if v, ok := c.values["dataDir"]; ok {
				assert.True(t, filepath.IsAbs(v), "dataDir must be absolute")
			}
			if v, ok := c.values["ebpf"]; ok {
				assert.Contains(t, []string{"auto", "on", "off"}, v)
			}
			if v, ok := c.values["logLevel"]; ok {
				assert.Contains(t, []string{"debug", "info", "warn", "error"}, v)
			}
		})
	}
	// The single-node file documents every key ebbd has.
	one := cfgs["ebbd"]
	for _, key := range ec.yamlKeys {
		_, set := one.values[key]
		assert.True(t, set || one.commented[key], "config/ebbd.yaml does not show key %q", key)
	}
}

// hostPort splits a host:port, failing the test when it cannot.
func hostPort(t *testing.T, addr string) (string, string) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	require.NoError(t, err, addr)
	return h, p
}

// targetFile is a Prometheus file_sd target file.
type targetFile []struct {
	Targets []string          `yaml:"targets"`
	Labels  map[string]string `yaml:"labels"`
}

func readTargets(t *testing.T, path string) []string {
	t.Helper()
	var tf targetFile
	decodeYAML(t, path, &tf)
	var out []string
	for _, g := range tf {
		out = append(out, g.Targets...)
	}
	require.NotEmpty(t, out, path)
	return out
}

func TestMultiNodeFilesAgree(t *testing.T) {
	cfgs, _ := configs(t)
	one, cp, rt, na := cfgs["ebbd"].values, cfgs["controlplane"].values, cfgs["router"].values, cfgs["nodeagent"].values

	// One store for the whole cluster.
	assert.Equal(t, cp["store"], rt["store"])
	assert.Equal(t, cp["store"], na["store"])

	// Routers and node agents reach the autoscaler at the control plane's API.
	for name, c := range map[string]map[string]string{"router": rt, "nodeagent": na} {
		u, err := url.Parse(c["autoscalerURL"])
		if assert.NoError(t, err, name) {
			assert.Equal(t, "http", u.Scheme, "%s: the API serves plain HTTP", name)
			assert.Equal(t, cp["apiAddr"], u.Host, "%s autoscalerURL must point at the control plane's apiAddr", name)
		}
	}
	// The control plane prints URLs with the routers' domain and port.
	assert.Equal(t, rt["domain"], cp["domain"])
	_, cpPort := hostPort(t, cp["httpAddr"])
	_, rtPort := hostPort(t, rt["httpAddr"])
	assert.Equal(t, rtPort, cpPort)

	// Router and node agent share a machine, so their health servers need
	// their own ports.
	rtHost, rtMetrics := hostPort(t, rt["metricsAddr"])
	naHost, naMetrics := hostPort(t, na["metricsAddr"])
	assert.NotEqual(t, rtMetrics, naMetrics)
	assert.Equal(t, rtHost, naHost, "both files describe the same example node")

	// Prometheus scrapes exactly those addresses.
	assert.Equal(t, []string{one["apiAddr"]}, readTargets(t, "prometheus/targets/all.yml"))
	assert.Equal(t, []string{cp["apiAddr"]}, readTargets(t, "prometheus/targets/controlplane.yml"))
	for file, want := range map[string]string{"prometheus/targets/router.yml": rt["metricsAddr"], "prometheus/targets/nodeagent.yml": na["metricsAddr"]} {
		targets := readTargets(t, file)
		assert.Contains(t, targets, want, file)
		_, wantPort := hostPort(t, want)
		for _, tg := range targets {
			_, p := hostPort(t, tg)
			assert.Equal(t, wantPort, p, "%s: %s", file, tg)
		}
	}

	// The Redis password in the example URLs is the one in redis.conf.
	u, err := url.Parse(cp["store"])
	require.NoError(t, err)
	pass, _ := u.User.Password()
	redisConf := string(readFile(t, "multinode/redis.conf"))
	assert.Contains(t, redisConf, "\nrequirepass "+pass+"\n")
	host, _ := hostPort(t, u.Host)
	assert.Regexp(t, `(?m)^bind .*\b`+regexp.QuoteMeta(host)+`\b`, redisConf, "redis.conf binds the address the URLs use")
	for _, line := range []string{"appendonly yes", "appendfsync always", "maxmemory-policy noeviction"} {
		assert.Contains(t, redisConf, "\n"+line+"\n")
	}
}

func TestPrometheusConfigReferences(t *testing.T) {
	var cfg struct {
		Global        map[string]any `yaml:"global"`
		RuleFiles     []string       `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			Authorization struct {
				CredentialsFile string `yaml:"credentials_file"`
			} `yaml:"authorization"`
			FileSDConfigs []struct {
				Files []string `yaml:"files"`
			} `yaml:"file_sd_configs"`
		} `yaml:"scrape_configs"`
	}
	decodeYAML(t, "prometheus/prometheus.yml", &cfg)
	for _, f := range cfg.RuleFiles {
		assert.FileExists(t, filepath.Join("prometheus", f))
	}
	jobs := map[string]bool{}
	for _, sc := range cfg.ScrapeConfigs {
		jobs[sc.JobName] = true
		// /metrics on the API address needs a metrics token; the other
		// roles' metricsAddr takes none.
		if sc.JobName == "ebb-all" || sc.JobName == "ebb-controlplane" {
			assert.Equal(t, "ebb-metrics-token", sc.Authorization.CredentialsFile, sc.JobName)
		} else {
			assert.Empty(t, sc.Authorization.CredentialsFile, sc.JobName)
		}
		require.NotEmpty(t, sc.FileSDConfigs, sc.JobName)
		for _, sd := range sc.FileSDConfigs {
			for _, f := range sd.Files {
				assert.FileExists(t, filepath.Join("prometheus", f), sc.JobName)
			}
		}
	}
	// EbbTargetDown matches job=~"ebb-.*".
	for job := range jobs {
		assert.True(t, strings.HasPrefix(job, "ebb-"), job)
	}
	assert.Len(t, jobs, 4)
}

// unit is a systemd unit file: section → key → values (keys may repeat).
type unit map[string]map[string][]string

func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, path)))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			require.NotEmpty(t, section, "%s:%d: key outside a section", path, n)
			require.False(t, strings.HasSuffix(line, `\`), "%s:%d: keep directives on one line", path, n)
			k, v, ok := strings.Cut(line, "=")
			require.True(t, ok, "%s:%d: not key=value: %q", path, n, line)
			u[section][k] = append(u[section][k], v)
		}
	}
	require.NoError(t, sc.Err())
	return u
}

func TestSystemdUnits(t *testing.T) {
	cfgs, ec := configs(t)
	tests := []struct {
		unit   string
		config string
		role   string
	}{
		{"ebbd.service", "ebbd", "all"},
		{"ebbd-controlplane.service", "controlplane", "controlplane"},
		{"ebbd-router.service", "router", "router"},
		{"ebbd-nodeagent.service", "nodeagent", "nodeagent"},
	}
	require.Len(t, deployFiles(t, ".service"), len(tests), "a new unit needs a row here")
	for _, tt := range tests {
		t.Run(tt.unit, func(t *testing.T) {
			u := parseUnit(t, filepath.Join("systemd", tt.unit))
			for _, s := range []string{"Unit", "Service", "Install"} {
				require.Contains(t, u, s)
			}
			svc := u["Service"]
			one := func(key string) string {
				require.Len(t, svc[key], 1, "Service.%s", key)
				return svc[key][0]
			}
			assert.Equal(t, "on-failure", one("Restart"))
			assert.Equal(t, "SIGTERM", one("KillSignal"))
			assert.NotEmpty(t, one("TimeoutStopSec"))
			assert.NotEmpty(t, one("LimitNOFILE"))
			assert.Equal(t, "ebb", one("StateDirectory"), "data under /var/lib/ebb")
			assert.True(t, strings.HasPrefix(one("EnvironmentFile"), "-/etc/default/"), "optional environment file")
			assert.Equal(t, []string{"multi-user.target"}, u["Install"]["WantedBy"])

			args := strings.Fields(one("ExecStart"))
			require.NotEmpty(t, args)
			assert.Equal(t, "/usr/local/bin/ebbd", args[0])
			var configPath string
			for i := 1; i < len(args); i++ {
				a := args[i]
				if a == "$EBBD_OPTS" {
					continue
				}
				require.True(t, strings.HasPrefix(a, "--"), "ExecStart argument %q", a)
				name, val, hasVal := strings.Cut(strings.TrimPrefix(a, "--"), "=")
				assert.True(t, ec.flags[name], "ebbd has no flag --%s", name)
				if !hasVal && i+1 < len(args) {
					i++
					val = args[i]
				}
				if name == "config" {
					configPath = val
				}
			}
			assert.Equal(t, "/etc/ebb/"+tt.config+".yaml", configPath, "each unit reads its own config file")
			c, ok := cfgs[tt.config]
			require.True(t, ok, "no deploy/config/%s.yaml", tt.config)
			assert.Equal(t, tt.role, c.values["role"])
			assert.Equal(t, "/var/lib/ebb", c.values["dataDir"], "the units' StateDirectory=ebb")

			// Roles that run replicas must keep their shims alive across a
			// restart; the others may clean up.
			wantKill := "mixed"
			if tt.role == "all" || tt.role == "nodeagent" {
				wantKill = "process"
			}
			assert.Equal(t, wantKill, one("KillMode"))
			// Other nodes need no copy of the admin token: they
			// authenticate with node credentials of their own.
			if tt.role == "router" || tt.role == "nodeagent" {
				assert.Empty(t, u["Unit"]["AssertFileNotEmpty"])
			}
			// Units that may drive containerd order themselves after it.
			if tt.role != "router" {
				assert.Contains(t, strings.Join(u["Unit"]["After"], " "), "containerd.service")
				assert.Contains(t, strings.Join(u["Unit"]["Wants"], " "), "containerd.service")
			}
		})
	}
}

// deployPathRE finds repository paths under deploy/ that the files mention.
var deployPathRE = regexp.MustCompile(`\bdeploy/[A-Za-z0-9_./-]*[A-Za-z0-9_]`)

func TestMentionedDeployPathsExist(t *testing.T) {
	root := repoRoot(t)
	files := deployFiles(t, ".md", ".service", ".yaml", ".yml", ".json", ".conf", ".example")
	require.NotEmpty(t, files)
	for _, f := range files {
		for _, p := range deployPathRE.FindAllString(string(readFile(t, f)), -1) {
			_, err := os.Stat(filepath.Join(root, p))
			assert.NoError(t, err, "%s mentions %s", f, p)
		}
	}
}

// TestPromtool checks the Prometheus files with promtool and runs the
// alert unit tests, when promtool is installed (Debian: the prometheus
// package).
func TestPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not on PATH; the other tests check the rules' metrics and structure")
	}
	run := func(t *testing.T, args ...string) {
		t.Helper()
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "prometheus"
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "promtool %s:\n%s", strings.Join(args, " "), out)
	}
	t.Run("check config", func(t *testing.T) {
		// The config reads its scrape token from a file beside it, which
		// an operator makes (see the file's comment): check a copy with one.
		dir := t.TempDir()
		for _, f := range []string{"prometheus.yml", "alerts.yml"} {
			require.NoError(t, os.WriteFile(filepath.Join(dir, f), readFile(t, filepath.Join("prometheus", f)), 0o600))
		}
		require.NoError(t, os.WriteFile(filepath.Join(dir, "ebb-metrics-token"), []byte("ebb_metrics_token\n"), 0o600))
		cmd := exec.Command(promtool, "check", "config", "prometheus.yml")
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "promtool check config prometheus.yml:\n%s", out)
	})
	t.Run("check rules", func(t *testing.T) { run(t, "check", "rules", "alerts.yml") })
	t.Run("test rules", func(t *testing.T) { run(t, "test", "rules", "alerts_test.yml") })
	t.Run("dashboard queries parse", func(t *testing.T) {
		// promtool has no query linter; recording rules get the same parser.
		d := loadDashboard(t)
		vars := strings.NewReplacer("$__rate_interval", "5m", "$function", ".*", "$instance", ".*")
		var rf struct {
			Groups []map[string]any `yaml:"groups"`
		}
		var rules []map[string]string
		for _, p := range d.allPanels() {
			for _, tg := range p.Targets {
				rules = append(rules, map[string]string{"record": "dashboard:query", "expr": vars.Replace(tg.Expr)})
			}
		}
		rf.Groups = append(rf.Groups, map[string]any{"name": "dashboard", "rules": rules})
		b, err := yaml.Marshal(rf)
		require.NoError(t, err)
		path := filepath.Join(t.TempDir(), "dashboard-rules.yml")
		require.NoError(t, os.WriteFile(path, b, 0o600))
		abs, err := filepath.Abs(path)
		require.NoError(t, err)
		run(t, "check", "rules", abs)
	})
}
