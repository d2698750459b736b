package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// validate checks a JSON body against a JSON Schema document as the
// reflection service writes them (type, properties, additionalProperties,
// items, $ref into $defs or definitions), the way the provider's JSON
// decoder will read it: field names match case-insensitively, and null
// fits anything (it leaves the zero value). It returns an error naming the
// first field that does not fit, or nil; a schema it cannot read checks
// nothing.
func validate(schemaText string, body json.RawMessage) error {
	var root map[string]any
	if json.Unmarshal([]byte(schemaText), &root) != nil {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return nil // parseBody checked it is JSON
	}
	return (&validator{root: root}).check(root, v, "", 0)
}

type validator struct{ root map[string]any }

// resolve follows $ref.
func (vr *validator) resolve(s map[string]any) map[string]any {
	for range 32 {
		ref, ok := s["$ref"].(string)
		if !ok {
			return s
		}
		var next map[string]any
		for _, prefix := range []string{"#/$defs/", "#/definitions/"} {
			if name, ok := strings.CutPrefix(ref, prefix); ok {
				defs, _ := vr.root[strings.TrimSuffix(strings.TrimPrefix(prefix, "#/"), "/")].(map[string]any)
				next, _ = defs[name].(map[string]any)
			}
		}
		if ref == "#" {
			next = vr.root
		}
		if next == nil {
			return nil
		}
		s = next
	}
	return nil
}

func types(s map[string]any) []string {
	switch t := s["type"].(type) {
	case string:
		return []string{t}
	case []any:
		var out []string
		for _, x := range t {
			if str, ok := x.(string); ok {
				out = append(out, str)
			}
		}
		return out
	}
	return nil
}

func (vr *validator) check(s map[string]any, v any, path string, depth int) error {
	if depth > 64 {
		return nil
	}
	if s = vr.resolve(s); s == nil || v == nil {
		return nil
	}
	// anyOf / oneOf (a pointer is its element or null): fits when one fits.
	for _, key := range []string{"anyOf", "oneOf"} {
		alts, ok := s[key].([]any)
		if !ok || len(alts) == 0 {
			continue
		}
		var first error
		for _, a := range alts {
			as, ok := a.(map[string]any)
			if !ok {
				return nil
			}
			err := vr.check(as, v, path, depth+1)
			if err == nil {
				return nil
			}
			if first == nil {
				first = err
			}
		}
		return first
	}
	where := func() string {
		if path == "" {
			return ""
		}
		return "field " + path + ": "
	}
	want := types(s)
	got := jsonType(v)
	if len(want) > 0 && !slices.Contains(want, got) && !(got == "integer" && slices.Contains(want, "number")) {
		return fmt.Errorf("%swant %s, got %s", where(), strings.Join(want, " or "), strings.TrimSpace(got+" "+shortValue(v)))
	}
	switch v := v.(type) {
	case map[string]any:
		props, _ := s["properties"].(map[string]any)
		extra := s["additionalProperties"]
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			sub, name := property(props, k)
			switch {
			case sub != nil:
				if err := vr.check(sub, v[k], join(path, name), depth+1); err != nil {
					return err
				}
			case extra == nil && props != nil, extra == false:
				names := make([]string, 0, len(props))
				for n := range props {
					names = append(names, n)
				}
				slices.Sort(names)
				return fmt.Errorf("%sunknown field %q (the decoder would drop it)%s; the fields are %s",
					where(), k, suggestion(k, names), strings.Join(names, ", "))
			default:
				if es, ok := extra.(map[string]any); ok {
					if err := vr.check(es, v[k], path+"["+strconv.Quote(k)+"]", depth+1); err != nil {
						return err
					}
				}
			}
		}
	case []any:
		if items, ok := s["items"].(map[string]any); ok {
			for i, x := range v {
				if err := vr.check(items, x, fmt.Sprintf("%s[%d]", path, i), depth+1); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// property finds the schema of key k among props, as encoding/json
// matches fields: exactly, else ignoring case.
func property(props map[string]any, k string) (map[string]any, string) {
	if s, ok := props[k].(map[string]any); ok {
		return s, k
	}
	for name, s := range props {
		if strings.EqualFold(name, k) {
			m, _ := s.(map[string]any)
			return m, name
		}
	}
	return nil, ""
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// jsonType is the JSON Schema type of a decoded value.
func jsonType(v any) string {
	switch v := v.(type) {
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case bool:
		return "boolean"
	case json.Number:
		if _, err := v.Int64(); err == nil || !strings.ContainsAny(v.String(), ".eE") {
			return "integer"
		}
		return "number"
	}
	return "null"
}

func shortValue(v any) string {
	switch v.(type) {
	case map[string]any, []any:
		return ""
	}
	b, _ := json.Marshal(v)
	if len(b) > 40 {
		b = append(b[:40], "…"...)
	}
	return string(b)
}
