package manifest

import (
	"fmt"
	"strings"
)

// Error is one problem found in a manifest.
type Error struct {
	File     string // the manifest's path; "" when parsed from bytes
	Document int    // 1-based index of the document within the file (YAML '---' documents); 0 = the file as a whole
	Line     int    // line where that document starts; 0 when unknown
	Field    string // the offending field's path, e.g. spec.template.spec.containers[0].image; "" = the whole document
	Message  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	if e.Document > 0 {
		fmt.Fprintf(&b, "document %d", e.Document)
		if e.Line > 0 {
			fmt.Fprintf(&b, " (line %d)", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// ErrorList is every problem Parse found, in file and document order. Parse, ParseFile and
// ParseDir return their validation problems as an ErrorList; errors.As with a *Error finds the
// first one.
type ErrorList []*Error

func (l ErrorList) Error() string {
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap exposes each *Error to errors.Is and errors.As.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// annotationField is how knactor names an annotation in errors: base is the path of the
// annotations map, e.g. metadata.annotations or spec.template.metadata.annotations.
func annotationField(base, key string) string {
	return base + "[" + key + "]"
}
