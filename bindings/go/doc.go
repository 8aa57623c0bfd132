// Package hap is the Go binding of libhap: one Anthropic OAuth session shared
// safely by every process on a machine (single-use refresh tokens, exactly one
// refresh POST per rotation machine-wide, store files never blanked).
//
//	pool, err := hap.Open(hap.Config{}) // ~/.hermes/auth.json + ~/.claude/.credentials.json
//	if err != nil { ... }
//	defer pool.Close()
//	tok, err := pool.ResolveToken(hap.ResolveOptions{})
//	if err != nil {
//		var he *hap.Error
//		switch {
//		case errors.Is(err, hap.ErrReauthRequired): // a person must log in again
//		case errors.As(err, &he) && !he.RetryAt.IsZero(): // come back at he.RetryAt
//		}
//		return err
//	}
//	req.Header.Set("Authorization", "Bearer "+tok.AccessToken())
//
// A Pool is safe for concurrent use; ResolveToken may block for a lock wait
// and a refresh. The package links libhap with cgo (see the README).
package hap
