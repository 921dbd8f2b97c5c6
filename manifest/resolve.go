package manifest

import (
	"fmt"
	"path/filepath"
)

// Resolve fills SecretValue.Value of every Secret object: fromFile through
// readFile (a relative path is relative to the directory of the manifest's
// file, Source.File; for "-" or "" to the working directory), fromEnv
// through getenv (an unset variable is an error; an empty one is a value).
// It is the applying client's step: values never sit in manifest files, and
// the server reads neither files nor its own environment. The errors are
// *Error (or Errors), one per key that could not be read.
func Resolve(objs []Object, readFile func(string) ([]byte, error), getenv func(string) (string, bool)) error {
	var errs []*Error
	for _, o := range objs {
		if o.Secret == nil {
			continue
		}
		for _, k := range sortedKeys(o.Secret.Data) {
			v := o.Secret.Data[k]
			fail := func(format string, args ...any) {
				line := v.line
				if line == 0 {
					line = o.Source.Line
				}
				errs = append(errs, &Error{File: o.Source.File, Doc: o.Source.Doc, Line: line,
					Field: join("spec.data", k), Msg: fmt.Sprintf(format, args...)})
			}
			switch {
			case v.FromFile != "":
				path := v.FromFile
				if !filepath.IsAbs(path) && o.Source.File != "" && o.Source.File != "-" {
					path = filepath.Join(filepath.Dir(o.Source.File), path)
				}
				b, err := readFile(path)
				if err != nil {
					fail("fromFile: %v", err)
					continue
				}
				v.Value = b
			case v.FromEnv != "":
				s, ok := getenv(v.FromEnv)
				if !ok {
					fail("fromEnv: variable %s is not set", v.FromEnv)
					continue
				}
				v.Value = []byte(s)
			case v.Value != nil:
				continue
			default:
				fail("has no source")
				continue
			}
			o.Secret.Data[k] = v
		}
	}
	return asError(errs)
}
