package manifest

import "github.com/ebbrun/ebb/api"

// Labels live in Metadata.Labels here and in api.FunctionSpec.Labels on the
// wire. These two functions are the only places that cross between them.

// withLabels returns spec carrying labels (api.FunctionSpec.Labels).
func withLabels(spec api.FunctionSpec, labels map[string]string) api.FunctionSpec {
	spec.Labels = labels
	return spec
}

// labelsOf returns the labels spec carries.
func labelsOf(spec api.FunctionSpec) map[string]string {
	return spec.Labels
}

// APISpec returns the spec to PUT to /v1/functions/{name}: the function's
// spec with metadata.labels as its labels. Traffic is PUT separately.
func (o Object) APISpec() api.FunctionSpec {
	if o.Function == nil {
		return api.FunctionSpec{}
	}
	return withLabels(o.Function.FunctionSpec, o.Metadata.Labels)
}
