// Package sdktest runs the README's recipe for the official Go SDK,
// github.com/anthropics/anthropic-sdk-go/v2, with a hapauth.Transport against
// a fake Messages API and the repository's fake token server.
//
// It is a module of its own, test-only, so that neither hap nor hapauth
// depends on the SDK (and on its Go 1.25 minimum).
package sdktest
