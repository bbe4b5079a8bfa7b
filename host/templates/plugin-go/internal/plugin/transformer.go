package plugin

import (
	"encoding/json"
	"fmt"
	"unsafe"
)

// The `transformer` world: the interface a policy implements and the `transform` export,
// in the style of abi.go (which it shares with validator.go in kitsync's Go example;
// `kitsync plugin new --kind transformer` writes this file in validator.go's place).

// TransformOutput is the WIT record `transform-output`: the complete new object list (not a
// delta: an object left out is removed from the kit) and the findings.
type TransformOutput struct {
	Objects     []Object
	Diagnostics []Diagnostic
}

// Transformer is what a transformer implements; Register it from an init function.
type Transformer interface {
	Metadata() Metadata
	ValidateConfig(config string) *Error
	Transform(config string, objects []Object) (TransformOutput, *Error)
}

var transformer Transformer

// Register makes t the plugin's implementation of the `transformer` world.
func Register(t Transformer) {
	registered = t
	transformer = t
}

// result<transform-output, plugin-error>: tag 0, payload 4 (transform-output: objects list
// 4, diagnostics list 12; or plugin-error: tag 4, string 8).
const transformResultSize = 20

// identity reads an object's identity out of its JSON text the way kitsync does, so the `id`
// returned always names the object returned (kitsync refuses a mismatch): apiVersion, kind
// and metadata.name are non-empty strings; an absent, null or empty namespace is none.
// The second result says what is wrong.
func identity(text string) (ObjectRef, string) {
	var top, metadata map[string]json.RawMessage
	if err := json.Unmarshal([]byte(text), &top); err != nil || top == nil {
		return ObjectRef{}, "object is not a JSON object"
	}
	if raw, ok := top["metadata"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &metadata); err != nil {
			return ObjectRef{}, "object's metadata is not an object"
		}
	}
	field := func(raw json.RawMessage, present bool, what string) (string, string) {
		var s string
		switch {
		case !present:
			return "", "object has no " + what
		case string(raw) == "null" || json.Unmarshal(raw, &s) != nil:
			return "", "object's " + what + " is not a string"
		case s == "":
			return "", "object has an empty " + what
		}
		return s, ""
	}
	var id ObjectRef
	var msg string
	raw, ok := top["apiVersion"]
	if id.APIVersion, msg = field(raw, ok, "apiVersion"); msg != "" {
		return id, msg
	}
	raw, ok = top["kind"]
	if id.Kind, msg = field(raw, ok, "kind"); msg != "" {
		return id, msg
	}
	raw, ok = metadata["name"]
	if id.Name, msg = field(raw, ok, "metadata.name"); msg != "" {
		return id, msg
	}
	if raw, ok = metadata["namespace"]; ok && string(raw) != "null" {
		var namespace string
		if json.Unmarshal(raw, &namespace) != nil {
			return id, "object's metadata.namespace is not a string"
		}
		if namespace != "" {
			id.Namespace = &namespace
		}
	}
	return id, ""
}

// putObjects lowers objects into a list<object>, the layout liftObjects reads.
func putObjects(objects []Object) (block, int) {
	out := newBlock(uintptr(len(objects)) * objectSize)
	for i, o := range objects {
		at := uintptr(i) * objectSize
		out.putObjectRef(at, o.ID)
		if o.Origin != nil {
			out.putU8(at+36, 1)
			out.putString(at+40, o.Origin.File)
			out.putU32(at+48, o.Origin.Document)
		}
		out.putString(at+52, o.JSON)
	}
	return out, len(objects)
}

//go:wasmexport transform
func exportTransform(config unsafe.Pointer, configLen uint32, objects unsafe.Pointer, objectsLen uint32) unsafe.Pointer {
	enter()
	text := liftString(config, configLen)
	list := liftObjects(objects, objectsLen)
	leave()
	area := newBlock(transformResultSize)
	output, err := transformer.Transform(text, list)
	if err != nil {
		area.putError(err)
		return area.ptr()
	}
	for i := range output.Objects {
		o := &output.Objects[i]
		id, msg := identity(o.JSON)
		if msg != "" {
			area.putError(&Error{Kind: Internal, Message: fmt.Sprintf(
				"transformer returned an object without a usable identity (output #%d, was %s %s): %s",
				i, o.ID.Kind, o.ID.Name, msg)})
			return area.ptr()
		}
		o.ID = id
	}
	out, n := putObjects(output.Objects)
	area.putList(4, out, n)
	findings, m := putDiagnostics(output.Diagnostics)
	area.putList(12, findings, m)
	return area.ptr()
}
