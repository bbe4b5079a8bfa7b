package plugin

import "unsafe"

// The `validator` world: the interface a policy implements and the `validate` export.
// (`kitsync plugin new --kind transformer` writes transformer.go instead of this file.)

// Validator is what a validator implements; Register it from an init function.
type Validator interface {
	Metadata() Metadata
	ValidateConfig(config string) *Error
	Validate(config string, objects []Object) ([]Diagnostic, *Error)
}

var validator Validator

// Register makes v the plugin's implementation of the `validator` world.
func Register(v Validator) {
	registered = v
	validator = v
}

//go:wasmexport validate
func exportValidate(config unsafe.Pointer, configLen uint32, objects unsafe.Pointer, objectsLen uint32) unsafe.Pointer {
	enter()
	text := liftString(config, configLen)
	list := liftObjects(objects, objectsLen)
	leave()
	area := newBlock(resultSize)
	findings, err := validator.Validate(text, list)
	if err != nil {
		area.putError(err)
		return area.ptr()
	}
	out, n := putDiagnostics(findings)
	area.putList(4, out, n)
	return area.ptr()
}
