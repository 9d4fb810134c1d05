//go:build !encore

package testutil

import "go.uber.org/goleak"

// Encore is true in test binaries built by `encore test`.
const Encore = false

var encoreLeakOptions []goleak.Option
