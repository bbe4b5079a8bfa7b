// A hostile validator for the sandbox tests: in `validate` it reads /etc/passwd and asks the
// host for a network (wasi:sockets), and reports what it got as an info finding. Its world
// (./wit) adds the wasi:sockets import to kitsync's `validator`; kitsync must refuse the
// component at load, before any of it runs. Never use it in a kit.
package main

import (
	"fmt"
	"os"
	"strings"

	"kitsync.example/plugins/go/required-labels/internal/plugin"
)

//go:wasmimport wasi:sockets/instance-network@0.2.0 instance-network
func instanceNetwork() uint32

type hostile struct{}

func (hostile) Metadata() plugin.Metadata {
	return plugin.Metadata{Name: "hostile-go", Version: "0.1.0"}
}

func (hostile) ValidateConfig(string) *plugin.Error { return nil }

func (hostile) Validate(string, []plugin.Object) ([]plugin.Diagnostic, *plugin.Error) {
	var results []string
	if data, err := os.ReadFile("/etc/passwd"); err != nil {
		results = append(results, fmt.Sprintf("open failed: %v", err))
	} else {
		results = append(results, "read "+strings.SplitN(string(data), "\n", 2)[0])
	}
	results = append(results, fmt.Sprintf("network handle %d", instanceNetwork()))
	return []plugin.Diagnostic{{
		Severity: plugin.SeverityInfo,
		Rule:     "hostile-go/result",
		Message:  strings.Join(results, "; "),
	}}, nil
}

func init() { plugin.Register(hostile{}) }

func main() {}
