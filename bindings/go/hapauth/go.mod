module github.com/hap-oauth/hap/bindings/go/hapauth

go 1.24.0

require (
	github.com/hap-oauth/hap/bindings/go v0.0.0
	golang.org/x/oauth2 v0.35.0
)

// Development: the binding in the parent directory (cgo, links libhap).
replace github.com/hap-oauth/hap/bindings/go => ../
