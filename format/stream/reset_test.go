package stream

import (
	"reflect"
	"testing"
	"unsafe"
)

// fillEvery sets every field of the struct v points to (arrays element
// by element, slices to one element) to something other than its zero.
func fillEvery(t *testing.T, v reflect.Value) {
	t.Helper()
	for i := range v.NumField() {
		fillValue(t, v.Field(i), v.Type().Field(i).Name)
	}
}

func fillValue(t *testing.T, f reflect.Value, name string) {
	t.Helper()
	f = reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem() // unexported fields too
	switch f.Kind() {
	case reflect.Bool:
		f.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		f.SetInt(1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		f.SetUint(1)
	case reflect.Slice:
		f.Set(reflect.MakeSlice(f.Type(), 1, 4))
	case reflect.Array:
		for j := range f.Len() {
			fillValue(t, f.Index(j), name)
		}
	case reflect.Struct:
		fillEvery(t, f)
	default:
		t.Fatalf("field %s: kind %v not handled by the test", name, f.Kind())
	}
}

// emptyEvery reports the first field of v that is neither its zero value
// nor an empty slice.
func emptyEvery(v reflect.Value) string {
	for i := range v.NumField() {
		if name := emptyValue(v.Field(i), v.Type().Field(i).Name); name != "" {
			return name
		}
	}
	return ""
}

func emptyValue(f reflect.Value, name string) string {
	switch f.Kind() {
	case reflect.Slice:
		if f.Len() != 0 {
			return name
		}
	case reflect.Array:
		for j := range f.Len() {
			if n := emptyValue(f.Index(j), name); n != "" {
				return n
			}
		}
	case reflect.Struct:
		return emptyEvery(f)
	default:
		if !f.IsZero() {
			return name
		}
	}
	return ""
}

// TestResetClearsEveryField: reset sets its fields one by one, so a field
// added to request or carry and forgotten there would carry one request's
// state into the next.
func TestResetClearsEveryField(t *testing.T) {
	var r request
	fillEvery(t, reflect.ValueOf(&r).Elem())
	r.reset()
	if name := emptyEvery(reflect.ValueOf(&r).Elem()); name != "" {
		t.Errorf("request.reset leaves field %s set", name)
	}
	if cap(r.method) == 0 || cap(r.lists[4]) == 0 {
		t.Errorf("request.reset dropped the buffers it should keep")
	}
	var l carry
	fillEvery(t, reflect.ValueOf(&l).Elem())
	l.reset()
	if name := emptyEvery(reflect.ValueOf(&l).Elem()); name != "" {
		t.Errorf("carry.reset leaves field %s set", name)
	}
}
