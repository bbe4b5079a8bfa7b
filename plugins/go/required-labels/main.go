// required-labels in Go: every object (optionally only some kinds) carries the configured
// labels. The same contract, rule and messages as the Rust plugin (plugins/required-labels),
// built into a component for kitsync:plugin@0.1.0 `validator` by ./build: Go's own wasip1
// target with //go:wasmexport (a reactor, -buildmode=c-shared), the world's canonical ABI in
// ./internal/plugin, and wasm-tools with the WASI preview1 reactor adapter.
//
// Config: {"labels": ["app.kubernetes.io/name", ...], "kinds": ["Deployment", "apps/v1/StatefulSet"]}
// Rule: required-labels/missing (error, path /metadata/labels).
package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"kitsync.example/plugins/go/required-labels/internal/plugin"
)

const rule = "required-labels/missing"

var (
	nameRe = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$`)
	dnsRe  = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)
)

const configSchema = `{"$schema":"https://json-schema.org/draft/2020-12/schema",` +
	`"title":"required-labels config","type":"object",` +
	`"properties":{"labels":{"description":"Label keys every selected object must carry.",` +
	`"type":"array","minItems":1,"items":{"type":"string","minLength":1}},` +
	`"kinds":{"description":"Kinds to check (` + "`Deployment` or `apps/v1/Deployment`" +
	`); empty or absent means every kind.","type":"array","items":{"type":"string","minLength":1}}},` +
	`"required":["labels"],"additionalProperties":false}`

type config struct {
	labels []string
	kinds  []string
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func labelKeyError(key string) string {
	slash := strings.LastIndex(key, "/")
	name := key[slash+1:]
	if slash >= 0 {
		prefix := key[:slash]
		if len(prefix) > 253 || !dnsRe.MatchString(prefix) {
			return fmt.Sprintf("key %s: prefix is not a DNS subdomain", quote(key))
		}
	}
	if !nameRe.MatchString(name) {
		return fmt.Sprintf("key %s: name is not a qualified name", quote(key))
	}
	return ""
}

func stringList(v any) ([]string, bool) {
	items, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(items))
	for _, item := range items {
		s, ok := item.(string)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

// parseConfig returns the config, or the message of an invalid-config error.
func parseConfig(text string) (config, string) {
	var raw any
	if strings.TrimSpace(text) != "" {
		if err := json.Unmarshal([]byte(text), &raw); err != nil {
			return config{}, "config is not JSON: " + err.Error()
		}
	}
	if raw == nil {
		return config{}, `missing config: expected {"labels": ["<label key>", ...]}`
	}
	fields, ok := raw.(map[string]any)
	if !ok {
		return config{}, "config must be a JSON object"
	}
	var unknown []string
	for k := range fields {
		if k != "labels" && k != "kinds" {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return config{}, fmt.Sprintf("unknown field `%s`, expected `labels` or `kinds`", unknown[0])
	}
	rawLabels, ok := fields["labels"]
	if !ok {
		return config{}, "missing field `labels`"
	}
	labels, ok := stringList(rawLabels)
	if !ok {
		return config{}, "invalid type: `labels` must be a list of strings"
	}
	if len(labels) == 0 {
		return config{}, "`labels` must list at least one label key"
	}
	for _, key := range labels {
		if msg := labelKeyError(key); msg != "" {
			return config{}, "labels: " + msg
		}
	}
	var kinds []string
	if rawKinds, present := fields["kinds"]; present && rawKinds != nil {
		if kinds, ok = stringList(rawKinds); !ok {
			return config{}, "invalid type: `kinds` must be a list of strings"
		}
	}
	for _, k := range kinds {
		if k == "" || strings.HasPrefix(k, "/") || strings.HasSuffix(k, "/") {
			return config{}, fmt.Sprintf("kinds: %s is not a kind or apiVersion/kind", quote(k))
		}
	}
	return config{labels: labels, kinds: kinds}, ""
}

// matches: `Deployment` selects that kind in every group; `apps/v1/Deployment` only that apiVersion.
func matches(ref plugin.ObjectRef, selectors []string) bool {
	if len(selectors) == 0 {
		return true
	}
	for _, selector := range selectors {
		slash := strings.LastIndex(selector, "/")
		if slash < 0 && selector == ref.Kind {
			return true
		}
		if slash >= 0 && selector[:slash] == ref.APIVersion && selector[slash+1:] == ref.Kind {
			return true
		}
	}
	return false
}

type requiredLabels struct{}

func (requiredLabels) Metadata() plugin.Metadata {
	schema := configSchema
	return plugin.Metadata{Name: "required-labels", Version: "0.1.0", ConfigSchema: &schema}
}

func (requiredLabels) ValidateConfig(text string) *plugin.Error {
	if _, msg := parseConfig(text); msg != "" {
		return &plugin.Error{Kind: plugin.InvalidConfig, Message: msg}
	}
	return nil
}

func (requiredLabels) Validate(text string, objects []plugin.Object) ([]plugin.Diagnostic, *plugin.Error) {
	cfg, msg := parseConfig(text)
	if msg != "" {
		return nil, &plugin.Error{Kind: plugin.InvalidConfig, Message: msg}
	}
	path := "/metadata/labels"
	var findings []plugin.Diagnostic
	checked := 0
	for _, object := range objects {
		id := object.ID
		if !matches(id, cfg.kinds) {
			continue
		}
		checked++
		var value any
		if err := json.Unmarshal([]byte(object.JSON), &value); err != nil {
			return nil, &plugin.Error{
				Kind:    plugin.InvalidInput,
				Message: fmt.Sprintf("%s %s is not valid JSON: %v", id.Kind, id.Name, err),
			}
		}
		var present map[string]any
		if obj, ok := value.(map[string]any); ok {
			if meta, ok := obj["metadata"].(map[string]any); ok {
				present, _ = meta["labels"].(map[string]any)
			}
		}
		for _, key := range cfg.labels {
			if _, ok := present[key]; ok {
				continue
			}
			ref := id
			findings = append(findings, plugin.Diagnostic{
				Severity: plugin.SeverityError,
				Rule:     rule,
				Message:  fmt.Sprintf("%s %s is missing required label %s", id.Kind, id.Name, quote(key)),
				Object:   &ref,
				Path:     &path,
			})
		}
	}
	plugin.Log(plugin.LevelDebug, fmt.Sprintf("checked %d of %d objects", checked, len(objects)))
	return findings, nil
}

func init() { plugin.Register(requiredLabels{}) }

// main is not called: the module is a reactor, whose exports the host calls after _initialize.
func main() {}
