package hap_test

import (
	"testing"

	hap "github.com/hap-oauth/hap/bindings/go"
)

// A hot ResolveToken: the token is valid and no store changed, so the library
// only stats the two files. This measures the whole Go path: cgo call,
// result JSON decode, hap_free.
func BenchmarkResolveTokenHot(b *testing.B) {
	e := newEnv(b, nil)
	e.writeCreds(b, fresh())
	p := e.open(b, e.config())
	if _, err := p.ResolveToken(hap.ResolveOptions{}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.ResolveToken(hap.ResolveOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkResolveTokenHotParallel(b *testing.B) {
	e := newEnv(b, nil)
	e.writeCreds(b, fresh())
	p := e.open(b, e.config())
	if _, err := p.ResolveToken(hap.ResolveOptions{}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := p.ResolveToken(hap.ResolveOptions{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
