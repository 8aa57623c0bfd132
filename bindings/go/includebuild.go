//go:build includebuild

package hap

// Never built. `go mod vendor` copies only the packages a build imports, and the folders
// holding the prebuilt library and the header have no Go code of their own: importing their
// placeholder packages here keeps them in vendor/ (golang/go#26366; wasmtime-go does the same).
import (
	_ "github.com/hap-oauth/hap/bindings/go/include"
	_ "github.com/hap-oauth/hap/bindings/go/lib/linux-amd64"
)
