// Package linuxamd64 holds no Go code: the released module puts libhap.a for linux/amd64
// here. The file makes the folder a package, so that `go mod vendor` keeps it
// (includebuild.go imports it).
package linuxamd64
