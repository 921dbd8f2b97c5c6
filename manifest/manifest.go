package manifest

import (
	"fmt"
	"strings"

	"github.com/ebbrun/ebb/api"
)

// APIVersion is the apiVersion of ebb's own manifests.
const APIVersion = "ebb.dev/v1"

// KnativeAPIVersion is the apiVersion of the Knative Services Parse maps
// onto Function objects.
const KnativeAPIVersion = "serving.knative.dev/v1"

// The kinds of ebb.dev/v1.
const (
	KindFunction  = "Function"
	KindSecret    = "Secret"
	KindNamespace = "Namespace"
	// KindCronTrigger is a function's schedule (issue 20).
	KindCronTrigger = "CronTrigger"
	// KindJob is a run-to-completion job (issue 20). A job's spec cannot
	// change once created: applying another spec is an error, as a PUT is.
	KindJob = "Job"
)

// Limits on what Parse reads, so that a hostile stream costs bounded memory.
const (
	// MaxDocumentBytes caps one YAML or JSON document (a JSON array counts
	// as one). It leaves room for a resolved Secret whose values reach
	// api.MaxSecretBytes, base64-encoded.
	MaxDocumentBytes = 2 << 20
	// MaxInputBytes caps a whole stream.
	MaxInputBytes = 32 << 20
	// maxNodes caps the nodes visited in one document, aliases expanded,
	// so that an alias bomb ("billion laughs") is refused, not expanded.
	maxNodes = 100_000
	// maxErrors caps the errors reported for one document.
	maxErrors = 50
)

// Object is one document of a manifest stream: an ebb.dev/v1 Function,
// Secret, Namespace, CronTrigger or Job. A Knative Service arrives as a
// Function. Exactly one of Function, Secret, Namespace, CronTrigger and
// Job is set, as Kind says.
type Object struct {
	APIVersion string
	Kind       string
	Metadata   Metadata
	Function   *FunctionSpec
	Secret     *SecretSpec
	Namespace  *NamespaceSpec
	// CronTrigger's metadata.name is the trigger's; its function is
	// spec.function, in the same namespace.
	CronTrigger *CronTriggerSpec
	// Job is every api.JobSpec field under its JSON name.
	Job *api.JobSpec
	// Source says where the document came from; errors and tools use it.
	Source Source
	// Warnings name, one each, the Knative fields ebb ignored because
	// Options.Lenient was set (and harmless no-ops such as a container's
	// name). Never rendered.
	Warnings []string

	// envFrom holds a Knative container's envFrom secretRefs until Parse
	// expands them with the keys of the stream's Secret objects.
	envFrom []envFromRef
}

// Metadata names an object. Labels are the function's labels (Kubernetes
// syntax); annotations are carried for tools and not stored by ebb.
type Metadata struct {
	Name        string
	Namespace   string
	Labels      map[string]string
	Annotations map[string]string
}

// Source is where a document was read: the file as given to Parse, the
// document's 0-based index in it and the line (1-based) it starts on.
type Source struct {
	File string
	Doc  int
	Line int
}

// FunctionSpec is the spec of a Function: every api.FunctionSpec field
// under its JSON name (labels excepted: they are metadata.labels), and the
// traffic split. No traffic means the latest revision gets 100%.
type FunctionSpec struct {
	api.FunctionSpec
	Traffic []api.TrafficTarget `json:"traffic,omitempty"`
}

// SecretSpec is the spec of a Secret: its keys and where their values come
// from.
type SecretSpec struct {
	Data map[string]SecretValue
}

// SecretValue is where one key's value comes from: exactly one of FromFile
// (a path, relative to the manifest's directory) and FromEnv (a variable of
// the applying process). Value is filled by Resolve, or parsed from a
// resolved stream (Options.Resolved); it never comes from a file in git.
type SecretValue struct {
	FromFile string
	FromEnv  string
	Value    []byte

	line int // where the key was written, for Resolve's errors
}

// NamespaceSpec is the spec of a Namespace.
type NamespaceSpec struct {
	Quota api.Quota `json:"quota"`
}

// CronTriggerSpec is the spec of a CronTrigger: the function it calls
// and every api.CronTriggerSpec field under its JSON name.
type CronTriggerSpec struct {
	Function string `json:"function"`
	api.CronTriggerSpec
}

// Options tune Parse.
type Options struct {
	// Lenient turns the errors for Knative fields ebb cannot honour into
	// warnings (Object.Warnings); the fields are then ignored.
	Lenient bool
	// DefaultNamespace is the namespace of objects that name none. Empty
	// leaves Metadata.Namespace empty for the caller to decide.
	DefaultNamespace string
	// Resolved says the stream comes from Render of resolved objects (the
	// body of POST /v1/apply): secret values must be inline (value: base64)
	// and fromFile and fromEnv are errors, since the server reads no files.
	// Without it, an inline value is an error: secrets do not belong in git.
	Resolved bool
}

// Error is a problem with one document of a stream, with where it is.
type Error struct {
	File string
	// Doc is the 0-based index of the document; the message prints it
	// 1-based, as editors count.
	Doc  int
	Line int
	// Field is the path of the field, such as
	// spec.template.spec.containers[0].volumeMounts; empty for the whole
	// document.
	Field string
	Msg   string
}

// Error formats as "hello.yaml: document 2, line 14: spec.x: msg".
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	fmt.Fprintf(&b, "document %d", e.Doc+1)
	if e.Line > 0 {
		fmt.Fprintf(&b, ", line %d", e.Line)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors are the errors of several documents (or several fields of one).
// errors.As(err, &e) with e a *Error finds the first.
type Errors []*Error

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap lets errors.As and errors.Is see each *Error.
func (es Errors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}

// asError returns nil, the one *Error, or all of them as Errors.
func asError(es []*Error) error {
	switch len(es) {
	case 0:
		return nil
	case 1:
		return es[0]
	}
	return Errors(es)
}
