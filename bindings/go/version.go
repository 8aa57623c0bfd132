package hap

import (
	"fmt"
	"sync"
)

// Version returns libhap's version string, e.g. "hap 0.1.0 (abi 0.1)".
func Version() string { return libVersion() }

// ABIVersion returns the ABI version of the loaded libhap.
func ABIVersion() (major, minor uint16) {
	v := libABIVersion()
	return uint16(v >> 16), uint16(v)
}

// HeaderABIVersion returns the ABI version of the hap.h this package was
// compiled against.
func HeaderABIVersion() (major, minor uint16) {
	return uint16(headerABIVersion >> 16), uint16(headerABIVersion)
}

// CheckABI reports whether the loaded libhap can serve this package: the same
// major version, and a minor version at least the header's (minor versions
// only add). Open calls it; the check runs once per process.
func CheckABI() error { return abiCheck() }

var abiCheck = sync.OnceValue(func() error {
	return compatible(libABIVersion(), headerABIVersion, libVersion())
})

// compatible is the rule of docs/ABI.md: adding is a minor change, removing or
// re-meaning is a major one.
func compatible(lib, header uint32, libName string) error {
	if lib>>16 == header>>16 && lib&0xffff >= header&0xffff {
		return nil
	}
	return fmt.Errorf("%w: the loaded libhap (%q) speaks ABI %d.%d, this Go package was built against hap.h ABI %d.%d; rebuild libhap or relink (see CGO_LDFLAGS in the README)",
		ErrIncompatibleLibrary, libName, lib>>16, lib&0xffff, header>>16, header&0xffff)
}
