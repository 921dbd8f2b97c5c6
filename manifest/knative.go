package manifest

import (
	"fmt"
	"math"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ebbrun/ebb/api"
)

// autoscalingPrefix is the prefix of Knative's autoscaling annotations.
const autoscalingPrefix = "autoscaling.knative.dev/"

// envFromRef is a container's envFrom secretRef, expanded once the stream's
// Secret objects are known.
type envFromRef struct {
	secret, prefix string
	field          string
	line           int
}

// parseKnative maps a serving.knative.dev/v1 Service onto a Function.
func (d *docParser) parseKnative(root *yaml.Node, pairs []pair, obj *Object) {
	obj.APIVersion, obj.Kind = APIVersion, KindFunction
	fs := &FunctionSpec{}
	obj.Function = fs
	var spec *yaml.Node
	sawMeta := false
	for _, kv := range pairs {
		switch kv.key {
		case "apiVersion", "kind":
		case "metadata":
			sawMeta = true
			d.metadata(kv.v, obj, true)
		case "spec":
			spec = kv.v
		default: // status, most often, from kubectl get -o yaml
			d.unsupported(kv.kNode, kv.key, "")
		}
	}
	if !sawMeta {
		d.fail(root, "metadata.name", "is required")
	}
	if spec == nil {
		d.fail(root, "spec.template.spec.containers", "is required")
		return
	}
	specPairs, ok := d.mapping(spec, "spec")
	if !ok {
		return
	}
	sawTemplate := false
	for _, kv := range specPairs {
		switch kv.key {
		case "template":
			sawTemplate = true
			d.knativeTemplate(kv.v, obj)
		case "traffic":
			d.knativeTraffic(kv.v, fs)
		default:
			d.unsupported(kv.kNode, join("spec", kv.key), "")
		}
	}
	if !sawTemplate {
		d.fail(spec, "spec.template.spec.containers", "is required")
	}
	if len(d.errs) == 0 {
		d.validateFunction(spec, obj)
	}
}

func (d *docParser) knativeTemplate(n *yaml.Node, obj *Object) {
	pairs, ok := d.mapping(n, "spec.template")
	if !ok {
		return
	}
	sawSpec := false
	for _, kv := range pairs {
		switch kv.key {
		case "metadata":
			d.knativeTemplateMetadata(kv.v, obj)
		case "spec":
			sawSpec = true
			d.knativeRevisionSpec(kv.v, obj)
		default:
			d.unsupported(kv.kNode, join("spec.template", kv.key), "")
		}
	}
	if !sawSpec {
		d.fail(n, "spec.template.spec.containers", "is required")
	}
}

func (d *docParser) knativeTemplateMetadata(n *yaml.Node, obj *Object) {
	pairs, ok := d.mapping(n, "spec.template.metadata")
	if !ok {
		return
	}
	for _, kv := range pairs {
		field := join("spec.template.metadata", kv.key)
		switch kv.key {
		case "annotations":
			d.autoscalingAnnotations(kv.v, field, obj.Function)
		case "name":
			// The revision's own name, which traffic may use; ebb still
			// names it {function}-NNNNN too (api.FunctionSpec.RevisionName).
			obj.Function.RevisionName, _ = d.str(kv.v, field)
		case "labels":
			d.unsupported(kv.kNode, field, "ebb has no revision labels; metadata.labels label the function")
		default:
			d.unsupported(kv.kNode, field, "")
		}
	}
}

// knativeServiceAnnotations handles the Service's own annotations: ebb has
// a use for none of them (the autoscaling ones belong on the template).
func (d *docParser) knativeServiceAnnotations(n *yaml.Node, field string, obj *Object) {
	pairs, ok := d.mapping(n, field)
	if !ok {
		return
	}
	for _, kv := range pairs {
		why := ""
		if strings.HasPrefix(kv.key, autoscalingPrefix) {
			why = "autoscaling annotations go on spec.template.metadata.annotations"
		}
		d.unsupported(kv.kNode, join(field, kv.key), why)
	}
}

// autoscalingAnnotations maps the autoscaling.knative.dev/* annotations onto
// the spec's concurrency and scale; every other annotation is unsupported.
func (d *docParser) autoscalingAnnotations(n *yaml.Node, field string, fs *FunctionSpec) {
	pairs, ok := d.mapping(n, field)
	if !ok {
		return
	}
	var target *yaml.Node // applied once metric is known
	c, sc := &fs.Concurrency, &fs.Scale
	for _, kv := range pairs {
		f := join(field, kv.key)
		name, ok := strings.CutPrefix(kv.key, autoscalingPrefix)
		if !ok {
			d.unsupported(kv.kNode, f, "")
			continue
		}
		switch name {
		case "target":
			target = kv.v
		case "metric":
			if m, ok := d.str(kv.v, f); ok {
				switch m {
				case api.MetricConcurrency, api.MetricRPS:
					c.Metric = m
				default:
					d.unsupported(kv.v, f, fmt.Sprintf("metric %q needs the HPA; ebb scales by concurrency or rps", truncate(m)))
				}
			}
		case "class":
			if cl, ok := d.str(kv.v, f); ok && cl != "kpa.autoscaling.knative.dev" {
				d.unsupported(kv.v, f, fmt.Sprintf("class %q: ebb's autoscaler is Knative's KPA", truncate(cl)))
			}
		case "min-scale":
			sc.Min, _ = d.integer(kv.v, f)
		case "max-scale":
			sc.Max, _ = d.integer(kv.v, f)
		case "initial-scale":
			if v, ok := d.integer(kv.v, f); ok {
				sc.Initial = &v
			}
		case "activation-scale":
			sc.ActivationScale, _ = d.integer(kv.v, f)
		case "scale-to-zero-pod-retention-period":
			sc.ScaleToZeroRetention = d.duration(kv.v, f)
		case "window":
			sc.StableWindow = d.duration(kv.v, f)
		case "scale-down-delay":
			sc.ScaleDownDelay = d.duration(kv.v, f)
		case "panic-window-percentage":
			sc.PanicWindowPercent, _ = d.number(kv.v, f)
		case "panic-threshold-percentage":
			sc.PanicThresholdPercent, _ = d.number(kv.v, f)
		case "target-utilization-percentage":
			if p, ok := d.number(kv.v, f); ok {
				if p == 0 || p > 100 {
					d.fail(kv.v, f, "%g is outside (0, 100]", p)
				}
				c.TargetUtilization = p / 100
			}
		default:
			d.unsupported(kv.kNode, f, "")
		}
	}
	if target != nil {
		f := join(field, autoscalingPrefix+"target")
		v, ok := d.number(target, f)
		if !ok {
			return
		}
		if v != math.Trunc(v) || v < 1 || v > math.MaxInt32 {
			d.fail(target, f, "%g: ebb's targets are whole numbers of at least 1", v)
			return
		}
		if c.Metric == api.MetricRPS {
			c.RPSTarget = int(v)
		} else {
			c.Target = int(v)
		}
	}
}

// duration parses a Knative duration annotation ("1m5s"; Knative also
// takes bare seconds for none of these, so neither does ebb).
func (d *docParser) duration(n *yaml.Node, field string) api.Duration {
	s, ok := d.str(n, field)
	if !ok {
		return api.Duration{}
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		d.fail(n, field, "%q is not a non-negative duration such as 30s or 1m30s", truncate(s))
		return api.Duration{}
	}
	return api.D(v)
}

func (d *docParser) knativeRevisionSpec(n *yaml.Node, obj *Object) {
	const path = "spec.template.spec"
	fs := obj.Function
	pairs, ok := d.mapping(n, path)
	if !ok {
		return
	}
	sawContainers := false
	for _, kv := range pairs {
		f := join(path, kv.key)
		switch kv.key {
		case "containers":
			sawContainers = true
			items, ok := d.sequence(kv.v, f)
			if !ok {
				continue
			}
			if len(items) == 0 {
				d.fail(kv.v, f, "needs one container")
				continue
			}
			d.container(items[0], index(f, 0), obj)
			for i := 1; i < len(items); i++ {
				d.unsupported(items[i], index(f, i), "ebb runs one container per replica")
			}
		case "containerConcurrency":
			fs.Concurrency.HardLimit, _ = d.integer(kv.v, f)
		case "timeoutSeconds":
			if s, ok := d.integer(kv.v, f); ok {
				if s == 0 {
					continue // Knative's 0: the default
				}
				fs.Timeout = api.D(time.Duration(s) * time.Second)
			}
		default:
			d.unsupported(kv.kNode, f, "")
		}
	}
	if !sawContainers {
		d.fail(n, join(path, "containers"), "is required")
	}
}

// container maps the first container.
func (d *docParser) container(n *yaml.Node, path string, obj *Object) {
	fs := obj.Function
	pairs, ok := d.mapping(n, path)
	if !ok {
		return
	}
	sawImage := false
	for _, kv := range pairs {
		f := join(path, kv.key)
		switch kv.key {
		case "image":
			sawImage = true
			fs.Image, _ = d.str(kv.v, f)
		case "name":
			d.warn(kv.kNode, f, "ignored: ebb runs one unnamed container")
		case "args":
			d.decodeValue(kv.v, f, reflectOf(&fs.Args))
		case "env":
			d.env(kv.v, f, fs)
		case "envFrom":
			d.envFrom(kv.v, f, obj)
		case "ports":
			d.ports(kv.v, f, fs)
		case "resources":
			d.resources(kv.v, f, fs)
		case "command":
			d.unsupported(kv.kNode, f, "ebb keeps the image's entrypoint; args replace its CMD")
		default:
			d.unsupported(kv.kNode, f, "")
		}
	}
	if !sawImage {
		d.fail(n, join(path, "image"), "is required")
	}
}

func (d *docParser) env(n *yaml.Node, path string, fs *FunctionSpec) {
	items, ok := d.sequence(n, path)
	if !ok {
		return
	}
	for i, item := range items {
		f := index(path, i)
		pairs, ok := d.mapping(item, f)
		if !ok {
			continue
		}
		var name, value string
		var hasValue bool
		var from *yaml.Node
		for _, kv := range pairs {
			switch kv.key {
			case "name":
				name, _ = d.str(kv.v, join(f, "name"))
			case "value":
				value, hasValue = d.str(kv.v, join(f, "value"))
				if hasValue && strings.Contains(value, "$(") {
					d.unsupported(kv.v, join(f, "value"), "Kubernetes' $(VAR) expansion")
				}
			case "valueFrom":
				from = kv.v
			default:
				d.unsupported(kv.kNode, join(f, kv.key), "")
			}
		}
		if name == "" {
			d.fail(item, join(f, "name"), "is required")
			continue
		}
		if hasValue && from != nil {
			d.fail(item, f, "set value or valueFrom, not both")
			continue
		}
		if from != nil {
			if sec, ok := d.secretKeyRef(from, join(f, "valueFrom")); ok {
				sec.Env = name
				fs.Secrets = append(fs.Secrets, sec)
			}
			continue
		}
		if _, dup := fs.Env[name]; dup {
			d.fail(item, join(f, "name"), "%s is set twice", name)
			continue
		}
		if fs.Env == nil {
			fs.Env = map[string]string{}
		}
		fs.Env[name] = value
	}
}

// secretKeyRef maps valueFrom.secretKeyRef onto an ebb secret reference.
func (d *docParser) secretKeyRef(n *yaml.Node, path string) (api.Secret, bool) {
	var sec api.Secret
	pairs, ok := d.mapping(n, path)
	if !ok {
		return sec, false
	}
	found := false
	for _, kv := range pairs {
		f := join(path, kv.key)
		if kv.key != "secretKeyRef" {
			d.unsupported(kv.kNode, f, "ebb injects secrets only (secretKeyRef)")
			continue
		}
		found = true
		refPairs, ok := d.mapping(kv.v, f)
		if !ok {
			return sec, false
		}
		for _, r := range refPairs {
			rf := join(f, r.key)
			switch r.key {
			case "name":
				sec.Secret, _ = d.str(r.v, rf)
			case "key":
				sec.Key, _ = d.str(r.v, rf)
			case "optional":
				if opt, ok := d.boolean(r.v, rf); ok && opt {
					d.unsupported(r.v, rf, "ebb's secret references are never optional")
				}
			default:
				d.unsupported(r.kNode, rf, "")
			}
		}
		if sec.Secret == "" || sec.Key == "" {
			d.fail(kv.v, f, "needs name and key")
			return sec, false
		}
	}
	return sec, found
}

func (d *docParser) envFrom(n *yaml.Node, path string, obj *Object) {
	items, ok := d.sequence(n, path)
	if !ok {
		return
	}
	for i, item := range items {
		f := index(path, i)
		pairs, ok := d.mapping(item, f)
		if !ok {
			continue
		}
		ref := envFromRef{field: join(f, "secretRef"), line: item.Line}
		found := false
		for _, kv := range pairs {
			kf := join(f, kv.key)
			switch kv.key {
			case "prefix":
				ref.prefix, _ = d.str(kv.v, kf)
			case "secretRef":
				found = true
				refPairs, ok := d.mapping(kv.v, kf)
				if !ok {
					continue
				}
				for _, r := range refPairs {
					rf := join(kf, r.key)
					switch r.key {
					case "name":
						ref.secret, _ = d.str(r.v, rf)
					case "optional":
						if opt, ok := d.boolean(r.v, rf); ok && opt {
							d.unsupported(r.v, rf, "ebb's secret references are never optional")
						}
					default:
						d.unsupported(r.kNode, rf, "")
					}
				}
			default: // configMapRef
				d.unsupported(kv.kNode, kf, "ebb injects secrets only (secretRef)")
			}
		}
		if found {
			if ref.secret == "" {
				d.fail(item, join(ref.field, "name"), "is required")
				continue
			}
			obj.envFrom = append(obj.envFrom, ref)
		}
	}
}

// expandEnvFrom turns each envFrom secretRef into one secret reference per
// key of that secret, taken from a Secret object of the same stream: ebb
// injects secrets key by key, and a manifest cannot know the keys of a
// secret it does not define.
func (p *parser) expandEnvFrom() {
	secrets := map[string]*SecretSpec{} // namespace/name
	for _, o := range p.objs {
		if o.Secret != nil {
			secrets[o.Metadata.Namespace+"/"+o.Metadata.Name] = o.Secret
		}
	}
	kept := p.objs[:0]
	for _, o := range p.objs {
		var errs []*Error
		expanded := len(o.envFrom) > 0
		for _, ref := range o.envFrom {
			sec, ok := secrets[o.Metadata.Namespace+"/"+ref.secret]
			if !ok {
				msg := fmt.Sprintf("secret %q is not defined in this manifest: ebb injects secrets key by key, so define it here "+
					"(kind Secret, %s) or list its keys with env[].valueFrom.secretKeyRef", ref.secret, APIVersion)
				if p.opts.Lenient {
					o.Warnings = append(o.Warnings, fmt.Sprintf("line %d: %s: %s; ignored", ref.line, ref.field, msg))
					continue
				}
				errs = append(errs, &Error{File: p.file, Doc: o.Source.Doc, Line: ref.line, Field: ref.field, Msg: msg})
				continue
			}
			for _, key := range sortedKeys(sec.Data) {
				o.Function.Secrets = append(o.Function.Secrets, api.Secret{Secret: ref.secret, Key: key, Env: ref.prefix + key})
			}
		}
		o.envFrom = nil
		if len(errs) == 0 && expanded {
			if err := o.Function.WithDefaults().Validate(); err != nil {
				errs = append(errs, &Error{File: p.file, Doc: o.Source.Doc, Line: o.Source.Line, Field: "spec", Msg: err.Error()})
			}
		}
		if len(errs) > 0 {
			p.errs = append(p.errs, errs...)
			continue
		}
		kept = append(kept, o)
	}
	p.objs = kept
}

func (d *docParser) ports(n *yaml.Node, path string, fs *FunctionSpec) {
	items, ok := d.sequence(n, path)
	if !ok {
		return
	}
	for i, item := range items {
		f := index(path, i)
		if i > 0 {
			d.unsupported(item, f, "ebb serves one port")
			continue
		}
		pairs, ok := d.mapping(item, f)
		if !ok {
			continue
		}
		for _, kv := range pairs {
			kf := join(f, kv.key)
			switch kv.key {
			case "containerPort":
				if p, ok := d.integer(kv.v, kf); ok {
					if p < 1 || p > 65535 {
						d.fail(kv.v, kf, "%d is outside 1-65535", p)
					}
					fs.Port = p
				}
			case "name":
				// Knative's port name picks the protocol the container
				// speaks, as ebb's spec.protocol does.
				if s, ok := d.str(kv.v, kf); ok {
					switch s {
					case api.ProtocolHTTP1, api.ProtocolH2C:
						fs.Protocol = s
					default:
						d.unsupported(kv.v, kf, fmt.Sprintf("port name %q selects a protocol; ebb serves http1 and h2c", truncate(s)))
					}
				}
			case "protocol":
				if s, ok := d.str(kv.v, kf); ok && s != "TCP" {
					d.unsupported(kv.v, kf, "ebb serves TCP")
				}
			default:
				d.unsupported(kv.kNode, kf, "")
			}
		}
	}
}

func (d *docParser) resources(n *yaml.Node, path string, fs *FunctionSpec) {
	pairs, ok := d.mapping(n, path)
	if !ok {
		return
	}
	for _, kv := range pairs {
		f := join(path, kv.key)
		if kv.key != "limits" {
			d.unsupported(kv.kNode, f, "ebb enforces limits only")
			continue
		}
		limits, ok := d.mapping(kv.v, f)
		if !ok {
			continue
		}
		for _, l := range limits {
			lf := join(f, l.key)
			s, ok := d.str(l.v, lf)
			if !ok {
				continue
			}
			switch l.key {
			case "cpu":
				cpu, err := ParseCPU(s)
				if err != nil {
					d.fail(l.v, lf, "%v", err)
					continue
				}
				fs.Resources.CPU = cpu
			case "memory":
				b, err := ParseMemory(s)
				if err != nil {
					d.fail(l.v, lf, "%v", err)
					continue
				}
				fs.Resources.Memory = FormatBytes(b)
			default:
				d.unsupported(l.kNode, lf, "ebb limits cpu and memory")
			}
		}
	}
}

func (d *docParser) knativeTraffic(n *yaml.Node, fs *FunctionSpec) {
	items, ok := d.sequence(n, "spec.traffic")
	if !ok {
		return
	}
	fs.Traffic = []api.TrafficTarget{}
	for i, item := range items {
		f := index("spec.traffic", i)
		pairs, ok := d.mapping(item, f)
		if !ok {
			continue
		}
		var t api.TrafficTarget
		for _, kv := range pairs {
			kf := join(f, kv.key)
			switch kv.key {
			case "revisionName":
				t.Revision, _ = d.str(kv.v, kf)
			case "latestRevision":
				t.LatestRevision, _ = d.boolean(kv.v, kf)
			case "percent":
				t.Percent, _ = d.integer(kv.v, kf)
			case "tag":
				t.Tag, _ = d.str(kv.v, kf)
			default: // configurationName, url
				d.unsupported(kv.kNode, kf, "")
			}
		}
		fs.Traffic = append(fs.Traffic, t)
	}
}
