package hapauth_test

import (
	"fmt"
	"net/http"
	"strings"

	hap "github.com/hap-oauth/hap/bindings/go"
	"github.com/hap-oauth/hap/bindings/go/hapauth"
)

// One pool and one client for the whole program; every request, from any
// goroutine, goes through them.
func ExampleTransport() {
	pool, err := hap.Open(hap.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close()
	client := &http.Client{Transport: &hapauth.Transport{Pool: pool}}

	req, err := http.NewRequest(http.MethodPost, "https://api.anthropic.com/v1/messages",
		strings.NewReader(`{"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "Hello"}]}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Anthropic-Version", "2023-06-01")
	// Authorization and anthropic-beta are the Transport's job.
	res, err := client.Do(req)
	if err != nil {
		fmt.Println(err) // e.g. hap.ErrNoCredential: nothing was sent
		return
	}
	defer res.Body.Close()
	fmt.Println(res.Status)
}
