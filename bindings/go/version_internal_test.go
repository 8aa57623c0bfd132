package hap

import (
	"errors"
	"strings"
	"testing"
)

func TestABICompatibilityRule(t *testing.T) {
	for _, tc := range []struct {
		lib, header uint32
		ok          bool
	}{
		{0x00000001, 0x00000001, true},
		{0x00000002, 0x00000001, true},  // a newer minor only adds
		{0x00000000, 0x00000001, false}, // an older minor may lack a function
		{0x00010001, 0x00000001, false}, // another major
	} {
		err := compatible(tc.lib, tc.header, "hap test")
		if (err == nil) != tc.ok {
			t.Errorf("lib %#x header %#x: %v", tc.lib, tc.header, err)
		}
		if err != nil && (!errors.Is(err, ErrIncompatibleLibrary) || !strings.Contains(err.Error(), "ABI 0.1")) {
			t.Errorf("unclear error: %v", err)
		}
	}
}
