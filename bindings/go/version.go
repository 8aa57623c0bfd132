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
	lib := libABIVersion()
	if lib>>16 == headerABIVersion>>16 && lib&0xffff >= headerABIVersion&0xffff {
		return nil
	}
	return fmt.Errorf("%w: the loaded libhap (%q) speaks ABI %d.%d, this Go package was built against hap.h ABI %d.%d; rebuild libhap or relink (see CGO_LDFLAGS in the README)",
		ErrIncompatibleLibrary, libVersion(), lib>>16, lib&0xffff, headerABIVersion>>16, headerABIVersion&0xffff)
})
