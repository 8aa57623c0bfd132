// Package include holds no Go code: the released module puts hap.h here. The file makes the
// folder a package, so that `go mod vendor` keeps it (includebuild.go imports it).
package include
