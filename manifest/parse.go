package manifest

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/ebbrun/ebb/api"
)

// Parse reads a stream of YAML documents (separated by ---) or JSON (one
// object, or an array of objects) and returns the objects of the documents
// that parsed, with the errors of the others: nil, one *Error, or Errors. A
// document either parses completely or not at all, so a caller can apply
// the good documents and report the bad ones. file is used in errors and
// in Source, and anchors the relative paths of fromFile.
func Parse(file string, r io.Reader, opts Options) ([]Object, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxInputBytes+1))
	if err != nil {
		return nil, &Error{File: file, Msg: fmt.Sprintf("read: %v", err)}
	}
	if len(data) > MaxInputBytes {
		return nil, &Error{File: file, Msg: fmt.Sprintf("the stream is larger than %d bytes", MaxInputBytes)}
	}
	p := parser{file: file, opts: opts}
	for _, ch := range splitDocuments(data) {
		p.document(ch)
	}
	p.expandEnvFrom()
	return p.objs, asError(p.errs)
}

type parser struct {
	file string
	opts Options
	doc  int // index of the next document
	objs []Object
	errs []*Error
}

// chunk is one document's text and the line it starts on.
type chunk struct {
	text []byte
	line int
}

// docMarker matches a line that starts a document (---) or ends one (...).
var docMarker = regexp.MustCompile(`^(---|\.\.\.)([ \t].*)?\r?$`)

// splitDocuments cuts a stream at its document markers, so that each
// document is decoded (and its size checked) on its own and a syntax error
// in one does not lose the others. YAML forbids those markers at the start
// of a line inside a scalar, so the cut is exact. Chunks holding only
// blanks and comments are no documents.
func splitDocuments(data []byte) []chunk {
	if isJSON(data) {
		return []chunk{{text: data, line: 1}}
	}
	var chunks []chunk
	cur := chunk{line: 1}
	for i, ln := range bytes.SplitAfter(data, []byte("\n")) {
		trimmed := bytes.TrimRight(ln, "\n")
		if docMarker.Match(trimmed) {
			// Directives (%YAML) before a --- are dropped with their
			// chunk: ebb needs none.
			if hasContent(cur.text) {
				chunks = append(chunks, cur)
			}
			cur = chunk{line: i + 1}
			if bytes.HasPrefix(trimmed, []byte("...")) {
				cur.line = i + 2
				continue
			}
		}
		cur.text = append(cur.text, ln...)
	}
	if hasContent(cur.text) {
		chunks = append(chunks, cur)
	}
	return chunks
}

func isJSON(data []byte) bool {
	t := bytes.TrimLeft(data, " \t\r\n")
	return len(t) > 0 && (t[0] == '{' || t[0] == '[')
}

// hasContent says whether text holds more than blanks, comments, document
// markers and directives.
func hasContent(text []byte) bool {
	for _, ln := range bytes.Split(text, []byte("\n")) {
		t := bytes.TrimSpace(ln)
		if len(t) == 0 || t[0] == '#' || t[0] == '%' {
			continue
		}
		if bytes.Equal(t, []byte("---")) || bytes.HasPrefix(t, []byte("--- #")) {
			continue
		}
		return true
	}
	return false
}

var yamlLine = regexp.MustCompile(`^yaml: (?:line (\d+): )?(.*)$`)

// yamlErrorLine takes the line (1-based in the chunk, 0 if unknown) and the
// message from a yaml.v3 syntax error. yaml.v3 reports its scanner's errors
// with 1-based lines but its parser's ("did not find expected ...") with
// the 0-based line of the problem, leaving out line 0.
func yamlErrorLine(err error) (int, string) {
	m := yamlLine.FindStringSubmatch(err.Error())
	if m == nil {
		return 0, err.Error()
	}
	line := 0
	if m[1] != "" {
		line, _ = strconv.Atoi(m[1])
	}
	if isParserError(m[2]) {
		line++
	}
	return line, m[2]
}

func isParserError(msg string) bool {
	for _, p := range []string{
		"did not find expected node content", "did not find expected key",
		"did not find expected ',' or ']'", "did not find expected ',' or '}'",
		"did not find expected <document start>", "did not find expected '-' indicator",
	} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// document decodes one chunk into objects (several when it is a JSON array).
func (p *parser) document(ch chunk) {
	if len(ch.text) > MaxDocumentBytes {
		p.errs = append(p.errs, &Error{File: p.file, Doc: p.doc, Line: ch.line,
			Msg: fmt.Sprintf("the document is larger than %d bytes", MaxDocumentBytes)})
		p.doc++
		return
	}
	root, line, err := decodeNode(ch)
	if err != nil {
		p.errs = append(p.errs, &Error{File: p.file, Doc: p.doc, Line: line, Msg: err.Error()})
		p.doc++
		return
	}
	if root == nil {
		return // an empty document, such as a stray ---
	}
	if root.Kind == yaml.SequenceNode && isJSON(ch.text) {
		for _, item := range root.Content {
			p.object(item, ch.line)
		}
		return
	}
	p.object(root, ch.line)
}

// decodeNode parses one chunk into its root node, with lines made absolute.
func decodeNode(ch chunk) (root *yaml.Node, line int, err error) {
	defer func() {
		// yaml.v3 is meant not to panic on any input; should it, the
		// document is bad, not the caller's process.
		if r := recover(); r != nil {
			root, line, err = nil, ch.line, fmt.Errorf("invalid YAML: %v", r)
		}
	}()
	var doc yaml.Node
	err = yaml.NewDecoder(bytes.NewReader(ch.text)).Decode(&doc)
	if err != nil && isJSON(ch.text) && bytes.ContainsRune(ch.text, '\t') {
		// JSON is YAML but for tabs, which YAML does not take as
		// indentation; a raw tab cannot occur inside a JSON string.
		doc = yaml.Node{}
		err = yaml.NewDecoder(bytes.NewReader(bytes.ReplaceAll(ch.text, []byte("\t"), []byte(" ")))).Decode(&doc)
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, 0, nil
		}
		line, msg := yamlErrorLine(err)
		if line == 0 {
			return nil, ch.line, fmt.Errorf("invalid YAML: %s", msg)
		}
		line += ch.line - 1
		return nil, line, fmt.Errorf("invalid YAML: line %d: %s", line, msg)
	}
	shiftLines(&doc, ch.line-1, map[*yaml.Node]bool{})
	if len(doc.Content) == 0 {
		return nil, 0, nil
	}
	root = doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil, 0, nil
	}
	return root, root.Line, nil
}

func shiftLines(n *yaml.Node, by int, seen map[*yaml.Node]bool) {
	if seen[n] {
		return
	}
	seen[n] = true
	n.Line += by
	for _, c := range n.Content {
		shiftLines(c, by, seen)
	}
}

// object maps one document's root node onto an Object.
func (p *parser) object(root *yaml.Node, chunkLine int) {
	d := &docParser{file: p.file, doc: p.doc, opts: p.opts}
	p.doc++
	line := root.Line
	if line == 0 {
		line = chunkLine
	}
	obj := Object{Source: Source{File: p.file, Doc: d.doc, Line: line}}
	d.parseObject(root, &obj)
	if len(d.errs) > 0 {
		p.errs = append(p.errs, d.errs...)
		return
	}
	// In the order of the document, whichever pass found them.
	sort.SliceStable(d.warnings, func(i, j int) bool { return d.warnings[i].line < d.warnings[j].line })
	for _, w := range d.warnings {
		obj.Warnings = append(obj.Warnings, w.msg)
	}
	p.objs = append(p.objs, obj)
}

// docParser parses one document, collecting its errors and warnings.
type docParser struct {
	file     string
	doc      int
	opts     Options
	errs     []*Error
	warnings []warning
	nodes    int
}

type warning struct {
	line int
	msg  string
}

func (d *docParser) fail(n *yaml.Node, field, format string, args ...any) {
	if len(d.errs) >= maxErrors {
		return
	}
	line := 0
	if n != nil {
		line = n.Line
	}
	d.errs = append(d.errs, &Error{File: d.file, Doc: d.doc, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// unsupported reports a field ebb cannot honour: an error, or a warning
// when lenient.
func (d *docParser) unsupported(n *yaml.Node, field, why string) {
	msg := "not supported by ebb"
	if why != "" {
		msg += " (" + why + ")"
	}
	if d.opts.Lenient {
		d.warnings = append(d.warnings, warning{n.Line, fmt.Sprintf("line %d: %s: %s; ignored", n.Line, field, msg)})
		return
	}
	d.fail(n, field, "%s (use --lenient to ignore)", msg)
}

// warn notes a harmless field ebb has no use for.
func (d *docParser) warn(n *yaml.Node, field, msg string) {
	d.warnings = append(d.warnings, warning{n.Line, fmt.Sprintf("line %d: %s: %s", n.Line, field, msg)})
}

// deref follows aliases and counts nodes against the document's budget; it
// returns nil once the budget is spent (and reports that once).
func (d *docParser) deref(n *yaml.Node) *yaml.Node {
	for depth := 0; n != nil && n.Kind == yaml.AliasNode; depth++ {
		if depth > 100 {
			d.fail(n, "", "alias chain too long")
			return nil
		}
		n = n.Alias
	}
	d.nodes++
	if d.nodes == maxNodes {
		d.fail(n, "", "the document has more than %d nodes (aliases expanded)", maxNodes)
	}
	if d.nodes >= maxNodes || n == nil {
		return nil
	}
	return n
}

// pair is one key and value of a mapping.
type pair struct {
	key   string
	kNode *yaml.Node
	v     *yaml.Node
}

// mapping returns the pairs of a mapping node, reporting a node that is not
// a mapping, non-string keys, duplicate keys and merge keys. ok is false
// when n is not a mapping (null counts as an empty mapping).
func (d *docParser) mapping(n *yaml.Node, field string) ([]pair, bool) {
	if n = d.deref(n); n == nil {
		return nil, false
	}
	if isNull(n) {
		return nil, true
	}
	if n.Kind != yaml.MappingNode {
		d.fail(n, field, "must be a mapping, not %s", describe(n))
		return nil, false
	}
	seen := map[string]bool{}
	var pairs []pair
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := d.deref(n.Content[i]), n.Content[i+1]
		if k == nil {
			return nil, false
		}
		if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
			d.fail(k, field, "keys must be plain strings (no merge keys or complex keys)")
			return nil, false
		}
		if seen[k.Value] {
			d.fail(k, join(field, k.Value), "is set twice")
			return nil, false
		}
		seen[k.Value] = true
		pairs = append(pairs, pair{key: k.Value, kNode: k, v: v})
	}
	return pairs, true
}

// sequence returns the items of a sequence node (null: none).
func (d *docParser) sequence(n *yaml.Node, field string) ([]*yaml.Node, bool) {
	if n = d.deref(n); n == nil {
		return nil, false
	}
	if isNull(n) {
		return nil, true
	}
	if n.Kind != yaml.SequenceNode {
		d.fail(n, field, "must be a list, not %s", describe(n))
		return nil, false
	}
	return n.Content, true
}

// str returns a scalar as a string: any scalar but null, as written.
func (d *docParser) str(n *yaml.Node, field string) (string, bool) {
	if n = d.deref(n); n == nil {
		return "", false
	}
	if n.Kind != yaml.ScalarNode || isNull(n) {
		d.fail(n, field, "must be a string, not %s", describe(n))
		return "", false
	}
	return n.Value, true
}

// integer returns a non-negative integer scalar (a string of digits too:
// Knative's annotations are strings).
func (d *docParser) integer(n *yaml.Node, field string) (int, bool) {
	if n = d.deref(n); n == nil {
		return 0, false
	}
	if n.Kind != yaml.ScalarNode || !(n.Tag == "!!int" || n.Tag == "!!str") {
		d.fail(n, field, "must be an integer, not %s", describe(n))
		return 0, false
	}
	v, err := strconv.ParseInt(strings.TrimSpace(n.Value), 0, 32)
	if err != nil {
		d.fail(n, field, "%q is not an integer (or is too large)", truncate(n.Value))
		return 0, false
	}
	if v < 0 {
		d.fail(n, field, "%d must not be negative", v)
		return 0, false
	}
	return int(v), true
}

// number returns a non-negative finite number (a numeric string too).
func (d *docParser) number(n *yaml.Node, field string) (float64, bool) {
	if n = d.deref(n); n == nil {
		return 0, false
	}
	if n.Kind != yaml.ScalarNode || !(n.Tag == "!!int" || n.Tag == "!!float" || n.Tag == "!!str") {
		d.fail(n, field, "must be a number, not %s", describe(n))
		return 0, false
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(n.Value), 64)
	if err != nil || v != v || v > 1e15 || v < -1e15 {
		d.fail(n, field, "%q is not a finite number", truncate(n.Value))
		return 0, false
	}
	if v < 0 {
		d.fail(n, field, "%g must not be negative", v)
		return 0, false
	}
	return v, true
}

func (d *docParser) boolean(n *yaml.Node, field string) (bool, bool) {
	if n = d.deref(n); n == nil {
		return false, false
	}
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		d.fail(n, field, "must be true or false, not %s", describe(n))
		return false, false
	}
	v, err := strconv.ParseBool(n.Value)
	if err != nil {
		d.fail(n, field, "must be true or false, not %q", truncate(n.Value))
		return false, false
	}
	return v, true
}

// stringMap decodes a mapping of strings.
func (d *docParser) stringMap(n *yaml.Node, field string) map[string]string {
	pairs, ok := d.mapping(n, field)
	if !ok || len(pairs) == 0 {
		return nil
	}
	m := make(map[string]string, len(pairs))
	for _, kv := range pairs {
		if v, ok := d.str(kv.v, join(field, kv.key)); ok {
			m[kv.key] = v
		}
	}
	return m
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return "null"
		case "!!str":
			return fmt.Sprintf("the string %q", truncate(n.Value))
		}
		return fmt.Sprintf("%s %s", strings.TrimPrefix(n.Tag, "!!"), truncate(n.Value))
	}
	return "an unexpected node"
}

func truncate(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

// join builds a field path: a map key that is not a plain identifier is
// written ["key"].
func join(field, key string) string {
	if !plainKey.MatchString(key) {
		return field + "[" + strconv.Quote(key) + "]"
	}
	if field == "" {
		return key
	}
	return field + "." + key
}

var plainKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

func index(field string, i int) string { return fmt.Sprintf("%s[%d]", field, i) }

// parseObject dispatches on apiVersion and kind.
func (d *docParser) parseObject(root *yaml.Node, obj *Object) {
	pairs, ok := d.mapping(root, "")
	if !ok {
		return
	}
	fields := map[string]pair{}
	for _, kv := range pairs {
		fields[kv.key] = kv
	}
	apiVersion, ok1 := d.required(root, fields, "apiVersion")
	kind, ok2 := d.required(root, fields, "kind")
	if !ok1 || !ok2 {
		return
	}
	switch apiVersion {
	case APIVersion:
		d.parseEbb(root, kind, pairs, obj)
	case KnativeAPIVersion:
		if kind != "Service" {
			d.fail(fields["kind"].v, "kind", "%q of %s is not supported: ebb maps only Service", truncate(kind), KnativeAPIVersion)
			return
		}
		d.parseKnative(root, pairs, obj)
	default:
		d.fail(fields["apiVersion"].v, "apiVersion", "%q is neither %s nor %s", truncate(apiVersion), APIVersion, KnativeAPIVersion)
	}
}

func (d *docParser) required(root *yaml.Node, fields map[string]pair, key string) (string, bool) {
	kv, ok := fields[key]
	if !ok {
		d.fail(root, key, "is required")
		return "", false
	}
	s, ok := d.str(kv.v, key)
	if ok && s == "" {
		d.fail(kv.v, key, "is required")
		return "", false
	}
	return s, ok
}

// parseEbb parses an ebb.dev/v1 object.
func (d *docParser) parseEbb(root *yaml.Node, kind string, pairs []pair, obj *Object) {
	obj.APIVersion, obj.Kind = APIVersion, kind
	switch kind {
	case KindFunction, KindSecret, KindNamespace, KindCronTrigger, KindJob:
	default:
		d.fail(root, "kind", "%q is not one of %s, %s, %s, %s, %s", truncate(kind), KindFunction, KindSecret, KindNamespace, KindCronTrigger, KindJob)
		return
	}
	var spec *yaml.Node
	sawMeta := false
	for _, kv := range pairs {
		switch kv.key {
		case "apiVersion", "kind":
		case "metadata":
			sawMeta = true
			d.metadata(kv.v, obj, false)
		case "spec":
			spec = kv.v
		default:
			d.fail(kv.kNode, kv.key, "unknown field")
		}
	}
	if !sawMeta {
		d.fail(root, "metadata.name", "is required")
	}
	switch kind {
	case KindFunction:
		if spec == nil {
			d.fail(root, "spec", "is required")
			return
		}
		var fs FunctionSpec
		d.decode(spec, "spec", &fs)
		obj.Function = &fs
		if len(d.errs) == 0 {
			d.validateFunction(spec, obj)
		}
	case KindSecret:
		obj.Secret = d.secretSpec(spec)
		if obj.Metadata.Labels != nil || obj.Metadata.Annotations != nil {
			d.fail(root, "metadata.labels", "secrets have no labels or annotations in ebb")
		}
	case KindNamespace:
		ns := &NamespaceSpec{}
		if spec != nil {
			d.decode(spec, "spec", ns)
		}
		obj.Namespace = ns
		if obj.Metadata.Namespace != "" {
			d.fail(root, "metadata.namespace", "a Namespace is not inside a namespace")
		}
		if err := ns.Quota.Validate(); err != nil {
			d.fail(spec, "spec", "%v", err)
		}
		if obj.Metadata.Labels != nil || obj.Metadata.Annotations != nil {
			d.fail(root, "metadata.labels", "namespaces have no labels or annotations in ebb")
		}
	case KindCronTrigger:
		if spec == nil {
			d.fail(root, "spec", "is required")
			return
		}
		var cs CronTriggerSpec
		d.decode(spec, "spec", &cs)
		obj.CronTrigger = &cs
		if obj.Metadata.Labels != nil {
			d.fail(root, "metadata.labels", "cron triggers have no labels in ebb")
		}
		if len(d.errs) == 0 {
			d.validateCronTrigger(spec, &cs)
		}
	case KindJob:
		if spec == nil {
			d.fail(root, "spec", "is required")
			return
		}
		var js api.JobSpec
		d.decode(spec, "spec", &js)
		obj.Job = &js
		if obj.Metadata.Labels != nil || obj.Metadata.Annotations != nil {
			d.fail(root, "metadata.labels", "jobs have no labels or annotations in ebb")
		}
		if len(d.errs) == 0 {
			if err := js.Validate(); err != nil {
				d.fail(spec, specField(err), "%s", trimField(err))
			}
		}
	}
}

// validateCronTrigger checks a trigger's spec as the API will.
func (d *docParser) validateCronTrigger(spec *yaml.Node, cs *CronTriggerSpec) {
	if cs.Function == "" {
		d.fail(spec, "spec.function", "is required: the function the trigger calls")
	} else if err := api.ValidateName("spec.function", cs.Function); err != nil {
		d.fail(spec, "spec.function", "%s", trimField(err))
	}
	if err := cs.CronTriggerSpec.Validate(); err != nil {
		d.fail(spec, specField(err), "%s", trimField(err))
	}
}

// metadata parses metadata into obj. Knative documents may carry
// Kubernetes metadata ebb has no use for: those fields are unsupported
// (warnings when lenient), where ebb's own format calls them unknown.
func (d *docParser) metadata(n *yaml.Node, obj *Object, knative bool) {
	pairs, ok := d.mapping(n, "metadata")
	if !ok {
		return
	}
	for _, kv := range pairs {
		field := join("metadata", kv.key)
		switch kv.key {
		case "name":
			obj.Metadata.Name, _ = d.str(kv.v, field)
		case "namespace":
			obj.Metadata.Namespace, _ = d.str(kv.v, field)
		case "labels":
			obj.Metadata.Labels = d.stringMap(kv.v, field)
			for k, v := range obj.Metadata.Labels {
				if err := validateLabel(k, v); err != nil {
					d.fail(kv.v, join(field, k), "%v", err)
				}
			}
		case "annotations":
			if knative {
				d.knativeServiceAnnotations(kv.v, field, obj)
				continue
			}
			obj.Metadata.Annotations = d.stringMap(kv.v, field)
		default:
			if knative {
				d.unsupported(kv.kNode, field, "")
				continue
			}
			d.fail(kv.kNode, field, "unknown field")
		}
	}
	if obj.Metadata.Name == "" {
		d.fail(n, "metadata.name", "is required")
	} else if err := api.ValidateName("metadata.name", obj.Metadata.Name); err != nil {
		d.fail(n, "metadata.name", "%v", trimField(err))
	}
	if obj.Metadata.Namespace == "" && obj.Kind != KindNamespace {
		obj.Metadata.Namespace = d.opts.DefaultNamespace
	} else if obj.Metadata.Namespace != "" {
		if err := api.ValidateName("metadata.namespace", obj.Metadata.Namespace); err != nil {
			d.fail(n, "metadata.namespace", "%v", trimField(err))
		}
	}
}

// trimField drops the "field: " an api.ValidationError starts with, since
// the Error names the field itself.
func trimField(err error) string {
	var ve *api.ValidationError
	if errors.As(err, &ve) && ve.Field != "" {
		return strings.TrimPrefix(err.Error(), ve.Field+": ")
	}
	return err.Error()
}

// validateFunction checks a function spec as the API will (defaults
// applied), so that a bad manifest fails before anything is sent.
func (d *docParser) validateFunction(spec *yaml.Node, obj *Object) {
	fs := obj.Function
	if err := fs.FunctionSpec.WithDefaults().Validate(); err != nil {
		d.fail(spec, specField(err), "%s", trimField(err))
	}
	if fs.Traffic != nil {
		if err := api.ValidateTraffic(fs.Traffic, func(string) bool { return true }); err != nil {
			d.fail(spec, specField(err), "%s", trimField(err))
		}
	}
}

// specField is the manifest path of the spec field a validation error
// names: spec.{field}, or spec when it names none.
func specField(err error) string {
	var ve *api.ValidationError
	if errors.As(err, &ve) && ve.Field != "" {
		return "spec." + ve.Field
	}
	return "spec"
}

// secretSpec parses spec.data of a Secret.
func (d *docParser) secretSpec(spec *yaml.Node) *SecretSpec {
	s := &SecretSpec{Data: map[string]SecretValue{}}
	if spec == nil {
		d.fail(nil, "spec.data", "a secret needs at least one key")
		return s
	}
	pairs, ok := d.mapping(spec, "spec")
	if !ok {
		return s
	}
	for _, kv := range pairs {
		if kv.key != "data" {
			d.fail(kv.kNode, join("spec", kv.key), "unknown field (a Secret has only spec.data)")
			continue
		}
		keys, ok := d.mapping(kv.v, "spec.data")
		if !ok {
			continue
		}
		for _, k := range keys {
			field := join("spec.data", k.key)
			if err := api.ValidateSecretKey(field, k.key); err != nil {
				d.fail(k.kNode, field, "%s", trimField(err))
				continue
			}
			if v, ok := d.secretValue(k.v, field); ok {
				v.line = k.kNode.Line
				s.Data[k.key] = v
			}
		}
	}
	if len(s.Data) == 0 && len(d.errs) == 0 {
		d.fail(spec, "spec.data", "a secret needs at least one key")
	}
	return s
}

func (d *docParser) secretValue(n *yaml.Node, field string) (SecretValue, bool) {
	var v SecretValue
	pairs, ok := d.mapping(n, field)
	if !ok {
		return v, false
	}
	set := 0
	for _, kv := range pairs {
		f := join(field, kv.key)
		switch kv.key {
		case "fromFile", "fromEnv", "value":
			set++ // counted even when bad, so that one mistake makes one error
		}
		switch kv.key {
		case "fromFile":
			v.FromFile, ok = d.str(kv.v, f)
			if ok && v.FromFile == "" {
				d.fail(kv.v, f, "must not be empty")
			}
		case "fromEnv":
			v.FromEnv, ok = d.str(kv.v, f)
			if ok && v.FromEnv == "" {
				d.fail(kv.v, f, "must not be empty")
			}
		case "value":
			if !d.opts.Resolved {
				d.fail(kv.kNode, f, "inline secret values do not belong in a manifest file: use fromFile or fromEnv")
				continue
			}
			s, ok := d.str(kv.v, f)
			if !ok {
				continue
			}
			b, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				d.fail(kv.v, f, "must be base64")
				continue
			}
			v.Value = b
		default:
			d.fail(kv.kNode, f, "unknown field (use fromFile or fromEnv)")
		}
	}
	switch {
	case set > 1:
		d.fail(n, field, "set exactly one of fromFile and fromEnv")
		return v, false
	case set == 0:
		d.fail(n, field, "set one of fromFile and fromEnv")
		return v, false
	case len(d.errs) > 0:
		return v, false
	case d.opts.Resolved && v.Value == nil:
		d.fail(n, field, "a resolved stream carries values (value: base64), not fromFile or fromEnv")
		return v, false
	}
	return v, true
}

var labelName = regexp.MustCompile(`^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`)
var dnsSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// validateLabel checks a label as Kubernetes does: the key is an optional
// DNS-subdomain prefix and a slash, then a name of at most 63 characters;
// the value is empty or a name of at most 63 characters.
func validateLabel(key, value string) error {
	name := key
	if prefix, rest, ok := strings.Cut(key, "/"); ok {
		if len(prefix) > 253 || !dnsSubdomain.MatchString(prefix) {
			return fmt.Errorf("the key's prefix %q must be a DNS subdomain", truncate(prefix))
		}
		name = rest
	}
	if len(name) > 63 || !labelName.MatchString(name) {
		return fmt.Errorf("the key %q must be at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit", truncate(key))
	}
	if value != "" && (len(value) > 63 || !labelName.MatchString(value)) {
		return fmt.Errorf("the value %q must be at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit", truncate(value))
	}
	return nil
}

// sortedKeys returns a map's keys in order, for stable output.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
