package plugin

import "unsafe"

// The canonical ABI, by hand: what both worlds share (cabi_realloc, the `metadata` and
// `validate-config` exports, the `log` import, lifting objects and lowering findings). The
// world's own call is in validator.go (`validate`); `kitsync plugin new --kind transformer`
// writes transformer.go (`transform`) in its place, so a module exports one world only.
// Linear memory is 32-bit: a string or list is (pointer u32, length u32), an option or a
// variant is a u8 tag followed by its payload at the payload's alignment, and every record
// here has alignment 4. Results with more than one flat value are returned as a pointer to
// a "return area" that the host reads as soon as the export returns.

//go:wasmimport kitsync:plugin/host@0.1.0 log
//go:noescape
func hostLog(level uint32, message unsafe.Pointer, length uint32)

// Sizes of the records in linear memory (alignment 4 throughout).
const (
	objectRefSize  = 36 // api-version 0, kind 8, namespace option<string> 16, name 28
	objectSize     = 60 // id 0, origin option<origin> 36, json 52
	diagnosticSize = 72 // severity 0, rule 4, message 12, object option<object-ref> 20, path option<string> 60
	metadataSize   = 36 // name 0, version 8, kinds list<string> 16, config-schema option<string> 24
	// result<_, plugin-error> and result<list<diagnostic>, plugin-error>: tag 0, payload 4
	// (list, or plugin-error: tag 4, string 8).
	resultSize = 16
)

// hostBlocks keeps the blocks the host asked for alive: Go's collector cannot see the
// host's pointers. Arguments are copied into Go values on entry, then the blocks are let go.
var hostBlocks [][]uint32

// kept holds what the last export returned (its return area and every string and list it
// points to) until the next call, so the collector frees none of it before the host has
// read it.
var kept []any

//go:wasmexport cabi_realloc
func cabiRealloc(old unsafe.Pointer, oldSize, align, newSize uint32) unsafe.Pointer {
	if newSize == 0 {
		return unsafe.Pointer(uintptr(align))
	}
	// []uint64 gives 8-byte alignment, the most any type of this world needs.
	block := make([]uint64, (newSize+7)/8)
	p := unsafe.Pointer(&block[0])
	if old != nil && oldSize > 0 {
		copy(unsafe.Slice((*byte)(p), newSize), unsafe.Slice((*byte)(old), min(oldSize, newSize)))
	}
	hostBlocks = append(hostBlocks, unsafe.Slice((*uint32)(p), len(block)*2))
	return p
}

// Reading the host's arguments.

func addr(p unsafe.Pointer, offset uintptr) unsafe.Pointer { return unsafe.Add(p, offset) }

func u8(p unsafe.Pointer, offset uintptr) uint8 { return *(*uint8)(addr(p, offset)) }

func u32(p unsafe.Pointer, offset uintptr) uint32 { return *(*uint32)(addr(p, offset)) }

func ptrAt(p unsafe.Pointer, offset uintptr) unsafe.Pointer {
	return unsafe.Pointer(uintptr(u32(p, offset)))
}

func liftString(p unsafe.Pointer, length uint32) string {
	if length == 0 {
		return ""
	}
	return string(unsafe.Slice((*byte)(p), length)) // a copy
}

func stringAt(p unsafe.Pointer, offset uintptr) string {
	return liftString(ptrAt(p, offset), u32(p, offset+4))
}

func optionStringAt(p unsafe.Pointer, offset uintptr) *string {
	if u8(p, offset) == 0 {
		return nil
	}
	s := stringAt(p, offset+4)
	return &s
}

func liftObjectRef(p unsafe.Pointer) ObjectRef {
	return ObjectRef{
		APIVersion: stringAt(p, 0),
		Kind:       stringAt(p, 8),
		Namespace:  optionStringAt(p, 16),
		Name:       stringAt(p, 28),
	}
}

func liftObjects(p unsafe.Pointer, length uint32) []Object {
	objects := make([]Object, length)
	for i := range objects {
		o := addr(p, uintptr(i)*objectSize)
		objects[i].ID = liftObjectRef(o)
		if u8(o, 36) != 0 {
			objects[i].Origin = &Origin{File: stringAt(o, 40), Document: u32(o, 48)}
		}
		objects[i].JSON = stringAt(o, 52)
	}
	return objects
}

// Writing results: blocks of Go memory, kept until the next call.

type block []uint32

func newBlock(size uintptr) block {
	if size == 0 {
		return nil
	}
	b := make(block, (size+3)/4)
	kept = append(kept, b)
	return b
}

func (b block) ptr() unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}

func (b block) putU8(offset uintptr, v uint8)   { *(*uint8)(addr(b.ptr(), offset)) = v }
func (b block) putU32(offset uintptr, v uint32) { *(*uint32)(addr(b.ptr(), offset)) = v }

func stringPtr(s string) unsafe.Pointer { return unsafe.Pointer(unsafe.StringData(s)) }

func (b block) putString(offset uintptr, s string) {
	kept = append(kept, s)
	b.putU32(offset, uint32(uintptr(stringPtr(s))))
	b.putU32(offset+4, uint32(len(s)))
}

func (b block) putOptionString(offset uintptr, s *string) {
	if s != nil {
		b.putU8(offset, 1)
		b.putString(offset+4, *s)
	}
}

func (b block) putList(offset uintptr, list block, length int) {
	b.putU32(offset, uint32(uintptr(list.ptr())))
	b.putU32(offset+4, uint32(length))
}

func (b block) putObjectRef(offset uintptr, r ObjectRef) {
	b.putString(offset, r.APIVersion)
	b.putString(offset+8, r.Kind)
	b.putOptionString(offset+16, r.Namespace)
	b.putString(offset+28, r.Name)
}

// putError writes `err(plugin-error)` into a result's return area.
func (b block) putError(e *Error) {
	b.putU8(0, 1)
	b.putU8(4, uint8(e.Kind))
	b.putString(8, e.Message)
}

// enter starts an export: what the previous one returned has been read by now.
func enter() {
	kept = nil
}

// leave ends the argument lifting: the host's blocks have been copied.
func leave() {
	hostBlocks = nil
}

//go:wasmexport metadata
func exportMetadata() unsafe.Pointer {
	enter()
	m := registered.Metadata()
	area := newBlock(metadataSize)
	area.putString(0, m.Name)
	area.putString(8, m.Version)
	kinds := newBlock(uintptr(len(m.Kinds)) * 8)
	for i, k := range m.Kinds {
		kinds.putString(uintptr(i)*8, k)
	}
	area.putList(16, kinds, len(m.Kinds))
	area.putOptionString(24, m.ConfigSchema)
	return area.ptr()
}

//go:wasmexport validate-config
func exportValidateConfig(config unsafe.Pointer, configLen uint32) unsafe.Pointer {
	enter()
	text := liftString(config, configLen)
	leave()
	area := newBlock(resultSize)
	if err := registered.ValidateConfig(text); err != nil {
		area.putError(err)
	}
	return area.ptr()
}

// putDiagnostics lowers findings into a list<diagnostic>, returning the list and its length.
func putDiagnostics(findings []Diagnostic) (block, int) {
	out := newBlock(uintptr(len(findings)) * diagnosticSize)
	for i, d := range findings {
		at := uintptr(i) * diagnosticSize
		out.putU8(at, uint8(d.Severity))
		out.putString(at+4, d.Rule)
		out.putString(at+12, d.Message)
		if d.Object != nil {
			out.putU8(at+20, 1)
			out.putObjectRef(at+24, *d.Object)
		}
		out.putOptionString(at+60, d.Path)
	}
	return out, len(findings)
}
