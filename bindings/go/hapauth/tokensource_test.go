package hapauth_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	hap "github.com/hap-oauth/hap/bindings/go"
	"github.com/hap-oauth/hap/bindings/go/hapauth"
	"github.com/hap-oauth/hap/bindings/go/hapauth/internal/testkit"
	"golang.org/x/oauth2"
)

func TestTokenSourceRefreshesOnceAndCarriesTheCredential(t *testing.T) {
	f := setup(t)
	f.scene.WriteCreds(t, time.Now().Add(-time.Hour))
	pool := testkit.Open(t, f.scene.Config())
	ts := hapauth.TokenSource(pool, hap.ResolveOptions{})

	tok, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken != f.scene.CredsAccessToken(t) || tok.AccessToken == testkit.FixtureAccess {
		t.Error("not the refreshed token")
	}
	if tok.TokenType != "Bearer" || time.Until(tok.Expiry) < 50*time.Minute || !tok.Valid() {
		t.Errorf("type %q, expiry %v", tok.TokenType, tok.Expiry)
	}
	id, _ := tok.Extra("credential_id").(string)
	if id != testkit.OnlyStatus(t, pool).CredentialID {
		t.Errorf("credential_id %q", id)
	}
	again, err := ts.Token()
	if err != nil || again.AccessToken != tok.AccessToken {
		t.Fatalf("second Token: %v", err)
	}
	if n := f.srv.Posts(t); n != 1 {
		t.Errorf("%d refresh POSTs, want 1", n)
	}

	// Through oauth2's own client (the beta header is the caller's job there).
	client := oauth2.NewClient(context.Background(), ts)
	req, _ := http.NewRequest(http.MethodPost, f.api.URL+"/v1/messages", strings.NewReader(body))
	req.Header.Set("Anthropic-Beta", hapauth.OAuthBeta)
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || f.api.Bearers()[0] != tok.AccessToken {
		t.Errorf("status %d", res.StatusCode)
	}
}

func TestTokenSourceErrorIsThePoolError(t *testing.T) {
	f := setup(t)
	pool := testkit.Open(t, f.scene.Config()) // no credential anywhere
	_, err := hapauth.TokenSource(pool, hap.ResolveOptions{}).Token()
	if !errors.Is(err, hap.ErrNoCredential) {
		t.Fatalf("err = %v", err)
	}
}
