module github.com/hap-oauth/hap/stress/workers/go

go 1.24

require github.com/hap-oauth/hap/bindings/go v0.0.0

replace github.com/hap-oauth/hap/bindings/go => ../../../bindings/go
