package idrange

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Defaults: ranges of 65536 ids from host id 2^31, as many as fit below
// the last valid id (2^32-1 is not one: it means "no id").
const (
	DefaultBase  uint32 = 1 << 31
	DefaultSize  uint32 = 65536
	DefaultCount        = uint32((1<<32 - 1 - uint64(DefaultBase)) / uint64(DefaultSize)) // 32767
)

// maxNamespaceLen bounds a namespace's name in the table; tenancy
// namespaces are much shorter.
const maxNamespaceLen = 253

// ErrFull means every range has been handed out.
var ErrFull = errors.New("every user id range is taken")

// Range is a tenancy namespace's ids: container id i is host id HostID+i,
// for i below Size.
type Range struct {
	HostID uint32
	Size   uint32
}

// layout is where the ranges are: count ranges of size ids from base.
type layout struct {
	base, size, count uint32
}

func (l layout) validate() error {
	switch {
	case l.base == 0:
		return errors.New("id ranges must not start at the host's root")
	case l.size == 0:
		return errors.New("id ranges must not be empty")
	case l.count == 0:
		return errors.New("no id ranges to hand out")
	case uint64(l.base)+uint64(l.count)*uint64(l.size) > 1<<32-1:
		return fmt.Errorf("%d id ranges of %d from %d run past the host's last id", l.count, l.size, l.base)
	}
	return nil
}

// hostID is the first host id of range i.
func (l layout) hostID(i uint32) uint32 { return l.base + i*l.size }

// table is the ranges handed out: namespace → index of its range, and the
// index of the next one, past every index ever handed out.
type table struct {
	layout
	byNS map[string]uint32
	next uint32
}

// file is the table as it is stored: ranges by their first host id, so
// that a person reading it sees the ids.
type file struct {
	Version int    `json:"version"`
	Base    uint32 `json:"base"`
	Size    uint32 `json:"size"`
	Next    uint32 `json:"next"` // the index of the next range to hand out
	Ranges  ranges `json:"ranges"`
}

// ranges is namespace → first host id of its range. Decoding refuses a
// namespace named twice, which encoding/json would let the last one win.
type ranges map[string]uint32

func (r *ranges) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil {
		return err
	} else if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errors.New("ranges is not an object")
	}
	m := ranges{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		ns, _ := tok.(string) // an object's keys are strings
		if _, dup := m[ns]; dup {
			return fmt.Errorf("namespace %q is there twice", ns)
		}
		var hostID uint32
		if err := dec.Decode(&hostID); err != nil {
			return fmt.Errorf("namespace %q: %w", ns, err)
		}
		m[ns] = hostID
	}
	*r = m
	return nil
}

const fileVersion = 1

// decode reads a stored table, refusing anything that is not one this
// layout could have written: another layout, a range handed out twice, a
// range outside the layout or at or past next.
func decode(data []byte, l layout) (table, error) {
	var f file
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return table{}, fmt.Errorf("corrupt id range table: %w", err)
	}
	if dec.More() {
		return table{}, errors.New("corrupt id range table: data after the table")
	}
	if f.Version != fileVersion {
		return table{}, fmt.Errorf("id range table version %d, want %d", f.Version, fileVersion)
	}
	if f.Base != l.base || f.Size != l.size {
		return table{}, fmt.Errorf("id range table has ranges of %d from %d, not of %d from %d: changing them would give namespaces ids another one had",
			f.Size, f.Base, l.size, l.base)
	}
	if f.Next > l.count {
		return table{}, fmt.Errorf("id range table hands out range %d of %d", f.Next, l.count)
	}
	t := table{layout: l, byNS: make(map[string]uint32, len(f.Ranges)), next: f.Next}
	owner := make(map[uint32]string, len(f.Ranges))
	for ns, hostID := range f.Ranges {
		if err := validNamespace(ns); err != nil {
			return table{}, fmt.Errorf("id range table: %w", err)
		}
		if hostID < l.base || (hostID-l.base)%l.size != 0 {
			return table{}, fmt.Errorf("id range table: namespace %q has host id %d, not the start of a range", ns, hostID)
		}
		i := (hostID - l.base) / l.size
		if i >= f.Next {
			return table{}, fmt.Errorf("id range table: namespace %q has range %d, not below the next one, %d", ns, i, f.Next)
		}
		if other, dup := owner[i]; dup {
			a, b := min(ns, other), max(ns, other)
			return table{}, fmt.Errorf("id range table: namespaces %q and %q have the same range (host id %d)", a, b, hostID)
		}
		owner[i] = ns
		t.byNS[ns] = i
	}
	return t, nil
}

// encode is the stored form of t, stable for a given table.
func (t table) encode() []byte {
	f := file{Version: fileVersion, Base: t.base, Size: t.size, Next: t.next, Ranges: make(ranges, len(t.byNS))}
	for ns, i := range t.byNS {
		f.Ranges[ns] = t.hostID(i)
	}
	b, _ := json.MarshalIndent(f, "", "  ") // a map of strings to numbers always encodes
	return append(b, '\n')
}

// lookup is ns's range, if it has one.
func (t table) lookup(ns string) (Range, bool) {
	i, ok := t.byNS[ns]
	if !ok {
		return Range{}, false
	}
	return Range{HostID: t.hostID(i), Size: t.size}, true
}

// with returns t with a new range for ns, which has none, and that range.
// t itself is unchanged, so that a table that could not be stored is
// dropped whole.
func (t table) with(ns string) (table, Range, error) {
	if err := validNamespace(ns); err != nil {
		return table{}, Range{}, err
	}
	if _, ok := t.byNS[ns]; ok {
		return table{}, Range{}, fmt.Errorf("namespace %q already has a range", ns)
	}
	if t.next >= t.count {
		return table{}, Range{}, fmt.Errorf("%w: %d namespaces have one", ErrFull, len(t.byNS))
	}
	n := table{layout: t.layout, byNS: make(map[string]uint32, len(t.byNS)+1), next: t.next + 1}
	for k, v := range t.byNS {
		n.byNS[k] = v
	}
	n.byNS[ns] = t.next
	return n, Range{HostID: t.hostID(t.next), Size: t.size}, nil
}

func validNamespace(ns string) error {
	switch {
	case ns == "":
		return errors.New("a namespace without a name")
	case len(ns) > maxNamespaceLen:
		return fmt.Errorf("namespace name of %d bytes, more than %d", len(ns), maxNamespaceLen)
	}
	return nil
}
