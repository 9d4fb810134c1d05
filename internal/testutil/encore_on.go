//go:build encore

package testutil

import "go.uber.org/goleak"

// Encore is true in test binaries built by `encore test`.
const Encore = true

// The runtime's trace upload keeps a keep-alive connection of http.DefaultClient open.
var encoreLeakOptions = []goleak.Option{
	goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
	goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
}
