// Package plugin is a kitsync:plugin@0.1.0 world for Go's own wasip1 target: Go types for
// the WIT records, and the core-wasm exports and import that the component model's canonical
// ABI expects, written by hand (abi.go, shared; validator.go for the `validator` world).
//
// Why by hand: the Go bindings generator (wit-bindgen-go, go.bytecodealliance.org) targets
// TinyGo. With Go 1.26's GOOS=wasip1 GOARCH=wasm its generated code does not compile
// ("go:wasmexport: unsupported result type *types.Metadata"): Go's wasm pointers are 64-bit,
// so a record holding strings or lists cannot cross //go:wasmexport as a Go struct. This
// package lays the records out in the ABI's 32-bit form itself.
package plugin

// ObjectRef is the WIT record `object-ref`.
type ObjectRef struct {
	APIVersion string
	Kind       string
	Namespace  *string // nil: none
	Name       string
}

// Origin is the WIT record `origin`.
type Origin struct {
	File     string
	Document uint32
}

// Object is the WIT record `object`: one Kubernetes object as JSON text.
type Object struct {
	ID     ObjectRef
	Origin *Origin
	JSON   string
}

// Severity is the WIT enum `severity`.
type Severity uint8

const (
	SeverityError Severity = iota
	SeverityWarning
	SeverityInfo
)

// Diagnostic is the WIT record `diagnostic`: a finding.
type Diagnostic struct {
	Severity Severity
	Rule     string
	Message  string
	Object   *ObjectRef
	Path     *string
}

// Metadata is the WIT record `metadata`.
type Metadata struct {
	Name         string
	Version      string
	Kinds        []string
	ConfigSchema *string
}

// ErrorKind is the case of the WIT variant `plugin-error`.
type ErrorKind uint8

const (
	InvalidConfig ErrorKind = iota
	InvalidInput
	Internal
)

// Error is the WIT variant `plugin-error`: a malfunction, never a policy finding.
type Error struct {
	Kind    ErrorKind
	Message string
}

func (e *Error) Error() string { return e.Message }

// world is what both worlds export besides their own call; validator.go (or, in a
// transformer, transformer.go) adds that call and Register.
type world interface {
	Metadata() Metadata
	ValidateConfig(config string) *Error
}

// registered is the plugin's implementation, set by Register.
var registered world

// Level is the WIT enum `host.level`.
type Level uint32

const (
	LevelDebug Level = iota
	LevelInfo
	LevelWarn
	LevelError
)

// Log writes a line to the host log (the import `kitsync:plugin/host.log`).
func Log(level Level, message string) {
	hostLog(uint32(level), stringPtr(message), uint32(len(message)))
}
