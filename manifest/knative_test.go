package manifest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

// ksvc wraps a revision template (indented under spec.template) into a
// Knative Service named hello.
func ksvc(template string, extra ...string) string {
	return "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: hello\nspec:\n  template:\n" +
		indent(template, "    ") + strings.Join(extra, "")
}

func indent(s, by string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = by + l
	}
	return strings.Join(lines, "\n") + "\n"
}

func TestKnativeMapping(t *testing.T) {
	for _, tc := range []struct {
		name  string
		src   string
		check func(t *testing.T, fs *FunctionSpec)
	}{
		{"image, env, args, port", ksvc(`spec:
  containers:
  - image: hello:1
    args: [-v, --port=9090]
    env:
    - {name: TARGET, value: world}
    - {name: EMPTY}
    ports: [{containerPort: 9090}]
`), func(t *testing.T, fs *FunctionSpec) {
			assert.Equal(t, "hello:1", fs.Image)
			assert.Equal(t, []string{"-v", "--port=9090"}, fs.Args)
			assert.Equal(t, map[string]string{"TARGET": "world", "EMPTY": ""}, fs.Env)
			assert.Equal(t, 9090, fs.Port)
		}},
		{"h2c port", ksvc(`spec:
  containers:
  - image: x
    ports: [{name: h2c, containerPort: 50051}]
`), func(t *testing.T, fs *FunctionSpec) {
			assert.Equal(t, api.ProtocolH2C, fs.Protocol)
			assert.Equal(t, 50051, fs.Port)
		}},
		{"resources", ksvc(`spec:
  containers:
  - image: x
    resources: {limits: {cpu: 500m, memory: 128Mi}}
`), func(t *testing.T, fs *FunctionSpec) {
			assert.Equal(t, api.Resources{CPU: 0.5, Memory: "128Mi"}, fs.Resources)
		}},
		{"decimal memory", ksvc(`spec:
  containers:
  - image: x
    resources: {limits: {cpu: "2", memory: 1G}}
`), func(t *testing.T, fs *FunctionSpec) {
			assert.Equal(t, api.Resources{CPU: 2, Memory: "1000000000"}, fs.Resources)
		}},
		{"containerConcurrency and timeoutSeconds", ksvc(`spec:
  containerConcurrency: 50
  timeoutSeconds: 120
  containers: [{image: x}]
`), func(t *testing.T, fs *FunctionSpec) {
			assert.Equal(t, 50, fs.Concurrency.HardLimit)
			assert.Equal(t, api.D(2*time.Minute), fs.Timeout)
		}},
		{"secretKeyRef", ksvc(`spec:
  containers:
  - image: x
    env:
    - name: DB_PASSWORD
      valueFrom: {secretKeyRef: {name: db, key: password}}
`), func(t *testing.T, fs *FunctionSpec) {
			assert.Equal(t, []api.Secret{{Secret: "db", Key: "password", Env: "DB_PASSWORD"}}, fs.Secrets)
			assert.Nil(t, fs.Env)
		}},
		{"every autoscaling annotation", ksvc(`metadata:
  annotations:
    autoscaling.knative.dev/class: kpa.autoscaling.knative.dev
    autoscaling.knative.dev/metric: concurrency
    autoscaling.knative.dev/target: "10"
    autoscaling.knative.dev/target-utilization-percentage: "80"
    autoscaling.knative.dev/min-scale: "1"
    autoscaling.knative.dev/max-scale: "10"
    autoscaling.knative.dev/initial-scale: "0"
    autoscaling.knative.dev/activation-scale: "2"
    autoscaling.knative.dev/scale-to-zero-pod-retention-period: 1m5s
    autoscaling.knative.dev/window: 40s
    autoscaling.knative.dev/panic-window-percentage: "20.0"
    autoscaling.knative.dev/panic-threshold-percentage: "150.0"
    autoscaling.knative.dev/scale-down-delay: 15m
spec:
  containers: [{image: x}]
`), func(t *testing.T, fs *FunctionSpec) {
			assert.Equal(t, api.Concurrency{Metric: "concurrency", Target: 10, TargetUtilization: 0.8}, fs.Concurrency)
			assert.Equal(t, api.Scale{Min: 1, Max: 10, Initial: intp(0), ActivationScale: 2,
				ScaleToZeroRetention: api.D(65 * time.Second), StableWindow: api.D(40 * time.Second),
				PanicWindowPercent: 20, PanicThresholdPercent: 150, ScaleDownDelay: api.D(15 * time.Minute)}, fs.Scale)
		}},
		{"rps target", ksvc(`metadata:
  annotations:
    autoscaling.knative.dev/target: "150"
    autoscaling.knative.dev/metric: rps
spec:
  containers: [{image: x}]
`), func(t *testing.T, fs *FunctionSpec) {
			assert.Equal(t, api.Concurrency{Metric: "rps", RPSTarget: 150}, fs.Concurrency)
		}},
		{"traffic", ksvc("spec:\n  containers: [{image: x}]\n", `  traffic:
  - {tag: current, revisionName: hello-00001, percent: 50}
  - {tag: candidate, revisionName: hello-00002, percent: 50}
  - {tag: latest, latestRevision: true, percent: 0}
`), func(t *testing.T, fs *FunctionSpec) {
			assert.Equal(t, []api.TrafficTarget{
				{Tag: "current", Revision: "hello-00001", Percent: 50},
				{Tag: "candidate", Revision: "hello-00002", Percent: 50},
				{Tag: "latest", LatestRevision: true, Percent: 0},
			}, fs.Traffic)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := parse(t, tc.src, Options{})
			require.NoError(t, err)
			require.Len(t, objs, 1)
			assert.Equal(t, KindFunction, objs[0].Kind)
			assert.Equal(t, APIVersion, objs[0].APIVersion)
			assert.Equal(t, "hello", objs[0].Metadata.Name)
			tc.check(t, objs[0].Function)
		})
	}
}

func TestKnativeUnsupported(t *testing.T) {
	for _, tc := range []struct {
		name  string
		src   string
		line  int
		field string
		msg   string
	}{
		{"volumeMounts", ksvc("spec:\n  containers:\n  - image: x\n    volumeMounts: [{name: cfg, mountPath: /etc/cfg}]\n"), 10, "spec.template.spec.containers[0].volumeMounts", "not supported by ebb (use --lenient to ignore)"},
		{"volumes", ksvc("spec:\n  containers: [{image: x}]\n  volumes: [{name: cfg, configMap: {name: c}}]\n"), 9, "spec.template.spec.volumes", "not supported"},
		{"command", ksvc("spec:\n  containers: [{image: x, command: [/bin/sh]}]\n"), 8, "spec.template.spec.containers[0].command", "entrypoint"},
		{"second container", ksvc("spec:\n  containers: [{image: x}, {image: y}]\n"), 8, "spec.template.spec.containers[1]", "one container"},
		{"requests", ksvc("spec:\n  containers: [{image: x, resources: {requests: {cpu: 1}}}]\n"), 8, "spec.template.spec.containers[0].resources.requests", "limits only"},
		{"gpu", ksvc("spec:\n  containers: [{image: x, resources: {limits: {nvidia.com/gpu: 1}}}]\n"), 8, `spec.template.spec.containers[0].resources.limits["nvidia.com/gpu"]`, "cpu and memory"},
		{"other port name", ksvc("spec:\n  containers: [{image: x, ports: [{name: grpc, containerPort: 8080}]}]\n"), 8, "spec.template.spec.containers[0].ports[0].name", "http1 and h2c"},
		{"hpa metric", ksvc("metadata:\n  annotations: {autoscaling.knative.dev/metric: cpu}\nspec:\n  containers: [{image: x}]\n"), 8, `spec.template.metadata.annotations["autoscaling.knative.dev/metric"]`, "HPA"},
		{"other annotation", ksvc("metadata:\n  annotations: {features.knative.dev/foo: x}\nspec:\n  containers: [{image: x}]\n"), 8, `spec.template.metadata.annotations["features.knative.dev/foo"]`, "not supported"},
		{"unknown autoscaling annotation", ksvc("metadata:\n  annotations: {autoscaling.knative.dev/bogus: x}\nspec:\n  containers: [{image: x}]\n"), 8, `spec.template.metadata.annotations["autoscaling.knative.dev/bogus"]`, "not supported"},
		{"service annotation", strings.Replace(ksvc("spec:\n  containers: [{image: x}]\n"), "  name: hello\n", "  name: hello\n  annotations: {autoscaling.knative.dev/min-scale: \"1\"}\n", 1), 5, `metadata.annotations["autoscaling.knative.dev/min-scale"]`, "spec.template.metadata.annotations"},
		{"status", ksvc("spec:\n  containers: [{image: x}]\n", "status: {url: http://x}\n"), 9, "status", "not supported"},
		{"configMapKeyRef", ksvc("spec:\n  containers:\n  - image: x\n    env: [{name: A, valueFrom: {configMapKeyRef: {name: c, key: k}}}]\n"), 10, "spec.template.spec.containers[0].env[0].valueFrom.configMapKeyRef", "secrets only"},
		{"env expansion", ksvc("spec:\n  containers:\n  - image: x\n    env: [{name: A, value: $(B)/x}]\n"), 10, "spec.template.spec.containers[0].env[0].value", "$(VAR)"},
		{"optional secret", ksvc("spec:\n  containers:\n  - image: x\n    env: [{name: A, valueFrom: {secretKeyRef: {name: s, key: k, optional: true}}}]\n"), 10, "spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef.optional", "never optional"},
		{"configuration traffic", ksvc("spec:\n  containers: [{image: x}]\n", "  traffic: [{latestRevision: true, configurationName: c, percent: 100}]\n"), 9, "spec.traffic[0].configurationName", "not supported"},
		{"envFrom configMap", ksvc("spec:\n  containers:\n  - image: x\n    envFrom: [{configMapRef: {name: c}}]\n"), 10, "spec.template.spec.containers[0].envFrom[0].configMapRef", "secrets only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := parse(t, tc.src, Options{})
			assert.Empty(t, objs)
			requireError(t, err, 0, tc.line, tc.field, tc.msg)

			objs, err = parse(t, tc.src, Options{Lenient: true})
			require.NoError(t, err, "lenient")
			require.Len(t, objs, 1)
			require.Len(t, objs[0].Warnings, 1)
			assert.Contains(t, objs[0].Warnings[0], tc.field)
			assert.Contains(t, objs[0].Warnings[0], "ignored")
		})
	}
}

func TestKnativeBad(t *testing.T) {
	for _, tc := range []struct {
		name  string
		src   string
		line  int
		field string
		msg   string
	}{
		{"no template", "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: a}\nspec: {}\n", 4, "spec.template.spec.containers", "is required"},
		{"no spec", "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: a}\n", 1, "spec.template.spec.containers", "is required"},
		{"no containers", ksvc("spec: {containerConcurrency: 50}\n"), 7, "spec.template.spec.containers", "is required"},
		{"empty containers", ksvc("spec: {containers: []}\n"), 7, "spec.template.spec.containers", "needs one container"},
		{"no image", ksvc("spec: {containers: [{args: [a]}]}\n"), 7, "spec.template.spec.containers[0].image", "is required"},
		{"bad cpu", ksvc("spec: {containers: [{image: x, resources: {limits: {cpu: lots}}}]}\n"), 7, "spec.template.spec.containers[0].resources.limits.cpu", "not a Kubernetes quantity"},
		{"negative memory", ksvc("spec: {containers: [{image: x, resources: {limits: {memory: -1Gi}}}]}\n"), 7, "spec.template.spec.containers[0].resources.limits.memory", "must not be negative"},
		{"negative concurrency", ksvc("spec: {containerConcurrency: -1, containers: [{image: x}]}\n"), 7, "spec.template.spec.containerConcurrency", "must not be negative"},
		{"negative min-scale", ksvc("metadata:\n  annotations: {autoscaling.knative.dev/min-scale: \"-1\"}\nspec: {containers: [{image: x}]}\n"), 8, `spec.template.metadata.annotations["autoscaling.knative.dev/min-scale"]`, "must not be negative"},
		{"fractional target", ksvc("metadata:\n  annotations: {autoscaling.knative.dev/target: \"0.5\"}\nspec: {containers: [{image: x}]}\n"), 8, `spec.template.metadata.annotations["autoscaling.knative.dev/target"]`, "whole numbers"},
		{"bad window", ksvc("metadata:\n  annotations: {autoscaling.knative.dev/window: soon}\nspec: {containers: [{image: x}]}\n"), 8, `spec.template.metadata.annotations["autoscaling.knative.dev/window"]`, "not a non-negative duration"},
		{"bad port", ksvc("spec: {containers: [{image: x, ports: [{containerPort: 70000}]}]}\n"), 7, "spec.template.spec.containers[0].ports[0].containerPort", "outside"},
		{"env both", ksvc("spec:\n  containers:\n  - image: x\n    env: [{name: A, value: b, valueFrom: {secretKeyRef: {name: s, key: k}}}]\n"), 10, "spec.template.spec.containers[0].env[0]", "not both"},
		{"env twice", ksvc("spec:\n  containers:\n  - image: x\n    env: [{name: A, value: b}, {name: A, value: c}]\n"), 10, "spec.template.spec.containers[0].env[1].name", "set twice"},
		{"traffic sum", ksvc("spec: {containers: [{image: x}]}\n", "  traffic: [{latestRevision: true, percent: 50}]\n"), 6, "spec.traffic", "sum to 50"},
		{"traffic both", ksvc("spec: {containers: [{image: x}]}\n", "  traffic: [{latestRevision: true, revisionName: hello-00001, percent: 100}]\n"), 6, "spec.traffic[0]", "exactly one"},
		{"envFrom unknown secret", ksvc("spec:\n  containers:\n  - image: x\n    envFrom: [{secretRef: {name: db}}]\n"), 10, "spec.template.spec.containers[0].envFrom[0].secretRef", "not defined in this manifest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := parse(t, tc.src, Options{})
			assert.Empty(t, objs)
			requireError(t, err, 0, tc.line, tc.field, tc.msg)
		})
	}
}

// envFrom takes the keys of the stream's Secret of that name, in order,
// whichever document comes first.
func TestKnativeEnvFrom(t *testing.T) {
	src := ksvc("spec:\n  containers:\n  - image: x\n    envFrom: [{secretRef: {name: db}, prefix: DB_}]\n") + `---
apiVersion: ebb.dev/v1
kind: Secret
metadata: {name: db}
spec:
  data:
    USER: {fromEnv: U}
    PASSWORD: {fromFile: pw}
`
	objs, err := parse(t, src, Options{})
	require.NoError(t, err)
	require.Len(t, objs, 2)
	assert.Equal(t, []api.Secret{
		{Secret: "db", Key: "PASSWORD", Env: "DB_PASSWORD"},
		{Secret: "db", Key: "USER", Env: "DB_USER"},
	}, objs[0].Function.Secrets)

	objs, err = parse(t, ksvc("spec:\n  containers:\n  - image: x\n    envFrom: [{secretRef: {name: db}}]\n"), Options{Lenient: true})
	require.NoError(t, err)
	require.Len(t, objs[0].Warnings, 1)
	assert.Contains(t, objs[0].Warnings[0], "not defined in this manifest")
}

// Knative's documented samples, as kept under testdata/knative.
func TestKnativeSamples(t *testing.T) {
	for _, tc := range []struct {
		file  string
		check func(t *testing.T, objs []Object, err error)
	}{
		{"helloworld-go.yaml", func(t *testing.T, objs []Object, err error) {
			require.NoError(t, err)
			require.Len(t, objs, 1)
			assert.Equal(t, "helloworld-go", objs[0].Metadata.Name)
			assert.Equal(t, "default", objs[0].Metadata.Namespace)
			assert.Equal(t, "docker.io/{username}/helloworld-go", objs[0].Function.Image)
			assert.Equal(t, map[string]string{"TARGET": "Go Sample v1"}, objs[0].Function.Env)
		}},
		{"autoscale-go.yaml", func(t *testing.T, objs []Object, err error) {
			require.NoError(t, err)
			require.Len(t, objs, 1)
			assert.Equal(t, 10, objs[0].Function.Concurrency.Target)
		}},
		{"min-scale.yaml", func(t *testing.T, objs []Object, err error) {
			require.NoError(t, err)
			assert.Equal(t, 3, objs[0].Function.Scale.Min)
		}},
		{"first-traffic-split.yaml", func(t *testing.T, objs []Object, err error) {
			require.NoError(t, err)
			assert.Equal(t, 8080, objs[0].Function.Port)
			assert.Equal(t, []api.TrafficTarget{{LatestRevision: true, Percent: 50}, {Revision: "hello-00001", Percent: 50}}, objs[0].Function.Traffic)
		}},
		{"container-concurrency.yaml", func(t *testing.T, objs []Object, err error) {
			// As printed, the page's example has no container.
			requireErrorAt(t, err, "spec.template.spec.containers", "is required")
		}},
		{"tag-header.yaml", func(t *testing.T, objs []Object, err error) {
			// It names its revisions, and its traffic uses those names.
			require.NoError(t, err)
			require.Len(t, objs, 2)
			assert.Equal(t, "tag-header-revision-1", objs[0].Function.RevisionName)
			assert.Equal(t, "tag-header-revision-2", objs[1].Function.RevisionName)
			assert.Equal(t, []api.TrafficTarget{{Revision: "tag-header-revision-1", Tag: "rev1"}, {Revision: "tag-header-revision-2", Percent: 100}}, objs[1].Function.Traffic)
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			f, err := os.Open(filepath.Join("testdata", "knative", tc.file))
			require.NoError(t, err)
			defer f.Close()
			objs, err := Parse(tc.file, f, Options{})
			tc.check(t, objs, err)
		})
	}
}

// The container-concurrency example with a container added parses.
func TestKnativeSamplesAdapted(t *testing.T) {
	b, err := os.ReadFile("testdata/knative/container-concurrency.yaml")
	require.NoError(t, err)
	src := string(b) + "      containers:\n      - image: hello:1\n"
	objs, err := parse(t, src, Options{})
	require.NoError(t, err)
	assert.Equal(t, 50, objs[0].Function.Concurrency.HardLimit)

}

func requireErrorAt(t *testing.T, err error, field, msg string) {
	t.Helper()
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, field, e.Field)
	assert.Contains(t, e.Msg, msg)
}
