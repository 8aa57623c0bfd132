//go:build !hap_system && !(linux && amd64)

package hap

// This module carries a prebuilt libhap.a for linux/amd64 only (lib/linux-amd64). Elsewhere,
// build libhap from the hap repository, install it (dist/c: libhap.so.0 and hap.pc), and
// build with `go build -tags hap_system`, which links it through pkg-config.
var _ = hapOauthHasNoPrebuiltLibhapForThisPlatformBuildWithTagsHapSystem
