package hapauth

import (
	hap "github.com/hap-oauth/hap/bindings/go"
	"golang.org/x/oauth2"
)

// TokenSource returns an oauth2.TokenSource whose Token resolves through pool
// on every call (a hot resolve is a few microseconds; a refresh, when due, is
// one POST machine-wide). The token's Extra("credential_id") names the pool
// credential, for Pool.ReportFailure.
//
// Hand it to code that takes an oauth2.TokenSource. For calls to the Anthropic
// API prefer Transport: oauth2.Transport sets only the Authorization header
// (the API also needs anthropic-beta: oauth-2025-04-20) and does not report a
// 401 or 429 to the pool. Do not wrap it in oauth2.ReuseTokenSource: hap
// already caches, and a cached copy would miss a sibling's refresh.
func TokenSource(pool *hap.Pool, opts hap.ResolveOptions) oauth2.TokenSource {
	return tokenSource{pool: pool, opts: opts}
}

type tokenSource struct {
	pool *hap.Pool
	opts hap.ResolveOptions
}

func (s tokenSource) Token() (*oauth2.Token, error) {
	t, err := s.pool.ResolveToken(s.opts)
	if err != nil {
		return nil, err
	}
	tok := &oauth2.Token{AccessToken: t.AccessToken(), TokenType: "Bearer", Expiry: t.ExpiresAt}
	return tok.WithExtra(map[string]any{"credential_id": t.CredentialID}), nil
}
