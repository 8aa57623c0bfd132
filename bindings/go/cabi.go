package hap

// This is the only file that talks to C. Everything here is a direct mapping of
// include/hap.h: Go strings in, (status, owned strings copied out) back. The
// idiomatic layer in pool.go never sees a C pointer except through rawPool.
//
// Linking: libhap is linked statically, so a program is self-contained and keeps working
// wherever its binary is moved (no libhap.so to find at run time, no rpath, no
// LD_LIBRARY_PATH). The static library comes from, first that exists:
//
//   - lib/<goos>-<goarch>/libhap.a inside this module: the released module carries the
//     prebuilt library (built for glibc 2.17+) and include/hap.h, as wasmtime-go ships
//     libwasmtime.a, so `go get` needs nothing but Go and a C compiler;
//   - ../../target/release/libhap.a in a checkout of the hap repository (development:
//     `cargo build --release` at the repository root).
//
// To link another copy, put its directory first: CGO_LDFLAGS="-L/opt/hap/lib" (flags from
// CGO_LDFLAGS come before the ones below). To link the system's shared libhap.so.0 instead
// (installed from dist/c, found through pkg-config), build with `-tags hap_system`.
// HAP_LIBRARY_PATH, which the Python and Node bindings read at run time, means nothing to a
// linked Go binary.
//
// A prebuilt platform needs its line below and its lib/<goos>-<goarch>/libhap.a in the
// module; unsupported.go names the platforms that have both.

/*
#cgo CFLAGS: -I${SRCDIR}/include -I${SRCDIR}/../../include
#cgo !hap_system,linux,amd64 LDFLAGS: -L${SRCDIR}/lib/linux-amd64
#cgo !hap_system LDFLAGS: -L${SRCDIR}/../../target/release -l:libhap.a -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
#cgo hap_system pkg-config: hap
#include <stdlib.h>
#include "hap.h"
*/
import "C"

import (
	"unsafe"
)

// headerABIVersion is HAP_ABI_VERSION of the hap.h this package was compiled
// against: (major << 16) | minor.
const headerABIVersion = uint32(C.HAP_ABI_VERSION)

func libABIVersion() uint32 { return uint32(C.hap_abi_version()) }

// libVersion returns a static string; hap_version's result is never freed.
func libVersion() string { return C.GoString(C.hap_version()) }

// statusName returns the library's static name for a status (never freed).
func statusName(s int32) string { return C.GoString(C.hap_status_name(C.hap_status(s))) }

// cJSON copies a JSON argument into C memory for the duration of one call.
// "" becomes NULL, which every JSON argument of the ABI accepts as "defaults".
// The caller frees the result with freeC. JSON produced by encoding/json
// never holds a raw NUL byte, so C.CString does not truncate it.
func cJSON(s string) *C.char {
	if s == "" {
		return nil
	}
	return C.CString(s)
}

func freeC(p *C.char) {
	if p != nil {
		C.free(unsafe.Pointer(p))
	}
}

// takeString is the one place an owned library string becomes a Go string: it
// copies the bytes into Go memory and hands the original back to hap_free,
// which zeroes it (result JSON can carry an access token).
func takeString(p *C.char) string {
	if p == nil {
		return ""
	}
	s := C.GoString(p)
	C.hap_free(p)
	return s
}

// rawPool is a hap_pool handle. A zero rawPool is "no handle".
type rawPool struct {
	ptr *C.hap_pool
}

func (r rawPool) valid() bool { return r.ptr != nil }

func rawOpen(config string) (rawPool, int32, string) {
	c := cJSON(config)
	defer freeC(c)
	var pool *C.hap_pool
	var errOut *C.char
	st := int32(C.hap_pool_open(c, &pool, &errOut))
	errJSON := takeString(errOut)
	if st != 0 {
		return rawPool{}, st, errJSON
	}
	return rawPool{ptr: pool}, 0, ""
}

// finish is the shape shared by resolve, report_failure and status: on
// success the result JSON, on failure the error JSON.
func finish(st C.hap_status, out, errOut *C.char) (int32, string, string) {
	return int32(st), takeString(out), takeString(errOut)
}

func (r rawPool) resolve(request string) (int32, string, string) {
	c := cJSON(request)
	defer freeC(c)
	var out, errOut *C.char
	st := C.hap_resolve_token(r.ptr, c, &out, &errOut)
	return finish(st, out, errOut)
}

func (r rawPool) reportFailure(failure string) (int32, string, string) {
	c := cJSON(failure)
	defer freeC(c)
	var out, errOut *C.char
	st := C.hap_report_failure(r.ptr, c, &out, &errOut)
	return finish(st, out, errOut)
}

func (r rawPool) status() (int32, string, string) {
	var out, errOut *C.char
	st := C.hap_pool_status(r.ptr, &out, &errOut)
	return finish(st, out, errOut)
}

// free releases the handle. The caller guarantees no call on it is in flight
// and that it is freed once (Pool's lock and the cleanup's Stop do).
func (r rawPool) free() { C.hap_pool_free(r.ptr) }

// The Go status codes must equal the header's macros: each line fails to
// compile ("constant overflows uint") when the two drift apart.
const (
	_ = uint(CodeOK-C.HAP_STATUS_OK) + uint(C.HAP_STATUS_OK-CodeOK)
	_ = uint(CodeInvalidArgument-C.HAP_STATUS_INVALID_ARGUMENT) + uint(C.HAP_STATUS_INVALID_ARGUMENT-CodeInvalidArgument)
	_ = uint(CodeNoCredential-C.HAP_STATUS_NO_CREDENTIAL) + uint(C.HAP_STATUS_NO_CREDENTIAL-CodeNoCredential)
	_ = uint(CodeReauthRequired-C.HAP_STATUS_REAUTH_REQUIRED) + uint(C.HAP_STATUS_REAUTH_REQUIRED-CodeReauthRequired)
	_ = uint(CodeUnavailable-C.HAP_STATUS_UNAVAILABLE) + uint(C.HAP_STATUS_UNAVAILABLE-CodeUnavailable)
	_ = uint(CodeLockTimeout-C.HAP_STATUS_LOCK_TIMEOUT) + uint(C.HAP_STATUS_LOCK_TIMEOUT-CodeLockTimeout)
	_ = uint(CodeStoreCorrupt-C.HAP_STATUS_STORE_CORRUPT) + uint(C.HAP_STATUS_STORE_CORRUPT-CodeStoreCorrupt)
	_ = uint(CodeIO-C.HAP_STATUS_IO) + uint(C.HAP_STATUS_IO-CodeIO)
	_ = uint(CodeUnknownCredential-C.HAP_STATUS_UNKNOWN_CREDENTIAL) + uint(C.HAP_STATUS_UNKNOWN_CREDENTIAL-CodeUnknownCredential)
	_ = uint(CodeInternal-C.HAP_STATUS_INTERNAL) + uint(C.HAP_STATUS_INTERNAL-CodeInternal)
)
