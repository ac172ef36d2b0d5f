package manifest

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// document is one YAML document of a file, or the whole of a JSON file.
type document struct {
	data      []byte
	json      bool
	firstLine int // line of the file where data starts
	line      int // line of its first content (not blank, not a comment); what errors show
}

// splitDocuments splits data into YAML documents at lines that start with '---' followed by
// nothing but blanks or a comment (as Kubernetes' YAML reader does). Data whose first
// non-blank character is '{' is one JSON document when it is valid JSON or comes from a .json
// file (whose syntax errors are then reported as JSON's); otherwise it is YAML in flow style.
func splitDocuments(data []byte, file string) []document {
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) > 0 && t[0] == '{' &&
		(json.Valid(data) || strings.EqualFold(filepath.Ext(file), ".json")) {
		line := 1 + bytes.Count(data[:len(data)-len(t)], []byte("\n"))
		return []document{{data: data, json: true, firstLine: 1, line: line}}
	}
	var (
		docs      []document
		start     = 0
		startLine = 1
		off       = 0
		content   = 0 // first content line of the current document; 0 = none yet
	)
	lines := bytes.SplitAfter(data, []byte("\n"))
	for i, ln := range lines {
		lineNo := i + 1
		text := strings.TrimRight(string(ln), "\r\n")
		if isSeparator(text) {
			docs = append(docs, document{data: data[start:off], firstLine: startLine, line: cmp.Or(content, startLine)})
			start, startLine, content = off+len(ln), lineNo+1, 0
		} else if content == 0 {
			if t := strings.TrimSpace(text); t != "" && !strings.HasPrefix(t, "#") {
				content = lineNo
			}
		}
		off += len(ln)
	}
	return append(docs, document{data: data[start:], firstLine: startLine, line: cmp.Or(content, startLine)})
}

func isSeparator(line string) bool {
	rest, ok := strings.CutPrefix(line, "---")
	if !ok {
		return false
	}
	rest = strings.TrimSpace(rest)
	return rest == "" || strings.HasPrefix(rest, "#")
}

var yamlLine = regexp.MustCompile(`\bline (\d+)`)

// toJSON converts the document to JSON. empty reports a document that holds nothing (only
// blanks and comments). YAML keys repeated in one mapping are an error.
func (d document) toJSON() (j []byte, empty bool, err error) {
	if d.json {
		var v any
		if err := json.Unmarshal(d.data, &v); err != nil {
			var se *json.SyntaxError
			if errors.As(err, &se) {
				line := d.firstLine + bytes.Count(d.data[:min(int(se.Offset), len(d.data))], []byte("\n"))
				return nil, false, fmt.Errorf("invalid JSON at line %d: %s", line, se)
			}
			return nil, false, fmt.Errorf("invalid JSON: %w", err)
		}
		return d.data, false, nil
	}
	j, err = yaml.YAMLToJSONStrict(d.data)
	if err != nil {
		// Line numbers in the YAML parser's messages count from the document's start.
		msg := yamlLine.ReplaceAllStringFunc(err.Error(), func(m string) string {
			n, _ := strconv.Atoi(strings.TrimPrefix(m, "line "))
			return "line " + strconv.Itoa(n+d.firstLine-1)
		})
		msg = strings.ReplaceAll(strings.TrimPrefix(msg, "error converting YAML to JSON: "), ":\n  ", ": ")
		return nil, false, errors.New(strings.ReplaceAll(msg, "\n  ", "; "))
	}
	if t := bytes.TrimSpace(j); len(t) == 0 || string(t) == "null" {
		return nil, true, nil
	}
	return j, false, nil
}

// decode checks apiVersion and kind, then decodes j into a Service strictly: case-sensitive
// field names, and every unknown or duplicated field is an error naming its path, as the
// Kubernetes API server reports them. It returns nil when the document cannot be a Service.
func (p *docParser) decode(j []byte) *servingv1.Service {
	if t := bytes.TrimLeft(j, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		p.fail("", "not an object: expected a %s %s", APIVersion, Kind)
		return nil
	}
	var tm struct {
		APIVersion any `json:"apiVersion"`
		Kind       any `json:"kind"`
	}
	if err := json.Unmarshal(j, &tm); err != nil {
		p.fail("", "%s", err)
		return nil
	}
	ok := p.expect("apiVersion", tm.APIVersion, APIVersion)
	ok = p.expect("kind", tm.Kind, Kind) && ok
	if !ok {
		return nil
	}

	svc := &servingv1.Service{}
	strict, err := kjson.UnmarshalStrict(j, svc)
	if err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			p.fail(te.Field, "expected %s, got %s", te.Type, te.Value)
		} else {
			p.fail("", "%s", strings.TrimPrefix(err.Error(), "json: "))
		}
		return nil
	}
	for _, se := range strict {
		var fe kjson.FieldError
		if errors.As(se, &fe) {
			p.fail(fe.FieldPath(), "%s", strings.TrimSuffix(se.Error(), " "+strconv.Quote(fe.FieldPath())))
		} else {
			p.fail("", "%s", se)
		}
	}
	return svc
}

// expect checks a top-level identifying field.
func (p *docParser) expect(field string, got any, want string) bool {
	switch g := got.(type) {
	case string:
		if g == want {
			return true
		}
		p.fail(field, "%q is not %s", g, want)
	case nil:
		p.fail(field, "required: must be %s", want)
	default:
		p.fail(field, "%v is not %s", g, want)
	}
	return false
}
