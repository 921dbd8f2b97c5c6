// Package manifest reads and writes ebb's declarative configuration: streams
// of YAML (or JSON) documents that say what functions, secrets and
// namespaces should exist. It is pure (no I/O but the reader it is given and
// the callbacks of Resolve) and shared by the CLI (ebb apply, diff, delete,
// export) and the control plane's POST /v1/apply.
//
// # ebb.dev/v1
//
//	apiVersion: ebb.dev/v1
//	kind: Function
//	metadata: {name: hello, namespace: team-a, labels: {app: shop}}
//	spec:
//	  image: hello:latest        # every api.FunctionSpec field under its JSON name
//	  scale: {min: 1}
//	  traffic:                   # optional; absent = the latest revision gets 100%
//	  - {latestRevision: true, percent: 90}
//	  - {revision: hello-00001, percent: 10, tag: stable}
//	---
//	apiVersion: ebb.dev/v1
//	kind: Secret
//	metadata: {name: db, namespace: team-a}
//	spec:
//	  data:
//	    password: {fromFile: secrets/db-password}   # relative to this file
//	    user: {fromEnv: DB_USER}
//	---
//	apiVersion: ebb.dev/v1
//	kind: Namespace
//	metadata: {name: team-a}
//	spec:
//	  quota: {functions: 10, memory: 4Gi}
//
// Unknown fields are errors. Function labels are metadata.labels
// (Kubernetes syntax); spec.labels is refused. metadata.annotations are
// carried in the Object for tools and not stored by ebb. A secret value
// written inline is an error: secrets are not kept in git. Resolve reads
// fromFile and fromEnv on the applying machine; Render then writes the
// values inline (value: base64), and the server parses that stream with
// Options.Resolved, which accepts only inline values, so the server never
// reads files.
//
// # Knative serving.knative.dev/v1 Service
//
// A Knative Service becomes a Function (Render writes it as ebb.dev/v1):
//
//	Knative                                                ebb
//	metadata.name, metadata.namespace                      metadata.name, metadata.namespace
//	metadata.labels                                        metadata.labels
//	spec.template.spec.containers[0].image                 spec.image
//	  .env[].name + .value                                 spec.env[name]
//	  .env[].valueFrom.secretKeyRef {name, key}            spec.secrets[] {secret: name, key, env: env[].name}
//	  .envFrom[].secretRef {name} (+ prefix)               spec.secrets[], one per key of the Secret object of
//	                                                       that name in the same stream: {secret, key, env: prefix+key}
//	  .ports[0].containerPort                              spec.port
//	  .ports[0].name (http1|h2c)                           spec.protocol
//	  .resources.limits.cpu ("500m", "2")                  spec.resources.cpu (cores: 0.5, 2)
//	  .resources.limits.memory ("128Mi", "1G", "1e9")      spec.resources.memory (bytes, as 128Mi / 1000000000)
//	  .args                                                spec.args
//	spec.template.spec.containerConcurrency                spec.concurrency.hardLimit
//	spec.template.spec.timeoutSeconds                      spec.timeout
//	spec.template.metadata.annotations:
//	  autoscaling.knative.dev/metric (concurrency|rps)     spec.concurrency.metric
//	  autoscaling.knative.dev/target                       spec.concurrency.target (rpsTarget when metric is rps)
//	  autoscaling.knative.dev/target-utilization-percentage spec.concurrency.targetUtilization (percent / 100)
//	  autoscaling.knative.dev/min-scale, max-scale         spec.scale.min, spec.scale.max
//	  autoscaling.knative.dev/initial-scale                spec.scale.initial
//	  autoscaling.knative.dev/activation-scale             spec.scale.activationScale
//	  autoscaling.knative.dev/scale-to-zero-pod-retention-period  spec.scale.scaleToZeroRetention
//	  autoscaling.knative.dev/window                       spec.scale.stableWindow
//	  autoscaling.knative.dev/panic-window-percentage      spec.scale.panicWindowPercent
//	  autoscaling.knative.dev/panic-threshold-percentage   spec.scale.panicThresholdPercent
//	  autoscaling.knative.dev/scale-down-delay             spec.scale.scaleDownDelay
//	  autoscaling.knative.dev/class (kpa only)             (ebb's autoscaler is the KPA)
//	spec.traffic[] revisionName, latestRevision,           spec.traffic[] revision, latestRevision,
//	               percent, tag                                           percent, tag
//
// Knative names revisions {service}-00001 as ebb does in the default
// namespace, so there a traffic split naming Knative's generated revisions
// applies unchanged. ebb injects
// secrets key by key, so envFrom needs the secret's keys: from a Secret
// object of the same stream, or it is an error.
//
// Every other field is an error naming its path ("spec.template.spec.
// containers[0].volumeMounts: not supported by ebb"), never silently
// ignored; Options.Lenient turns those errors into Object.Warnings and
// ignores the fields. A container's name is harmless and only warned
// about. Examples: volumes and volumeMounts, command (ebb keeps the
// image's entrypoint), probes, resources.requests, a second container or
// port, port names other than http1 and h2c, spec.template.metadata.name (ebb names revisions
// itself), metric cpu or memory (the HPA), env values using $(VAR), and
// status.
//
// Kubernetes quantities are parsed by a small exact parser (big.Rat) rather
// than k8s.io/apimachinery, whose dependency tree is large for two fields.
//
// # Errors and limits
//
// Parse uses go.yaml.in/yaml/v3 and walks its yaml.Node trees rather than
// decoding into structs, because the nodes keep line numbers: every error
// is an *Error naming the file, the document (1-based in the message), the
// line and the field path. The stream is cut at its document markers so
// that one bad document does not hide the others, and a document either
// parses completely or yields no object. A document is capped at
// MaxDocumentBytes (2 MiB: room for a resolved Secret of api.MaxSecretBytes
// in base64; a JSON array counts as one document), a stream at
// MaxInputBytes, and the nodes a document may visit with aliases expanded,
// so hostile input costs bounded memory and time.
package manifest
