module github.com/hap-oauth/hap/bindings/go

go 1.24
