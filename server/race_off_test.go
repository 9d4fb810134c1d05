//go:build !race

package server

import "time"

// switchBound is how long the flag flip test lets 500 clients take to switch: the
// 2 s budget of issue 6 (see race_on_test.go for -race runs).
const switchBound = 2 * time.Second
