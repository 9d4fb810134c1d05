// Package flag evaluates boolean feature flags and stores them in a NATS key-value
// bucket that every instance watches.
//
// # Model
//
// A Flag has a kill switch (Enabled), a percentage rollout (Rollout, 0-100) and
// per-user overrides. Evaluate decides, in this order:
//
//  1. unknown flag: false;
//  2. Enabled == false (kill switch): false for everyone, overrides included;
//  3. an override for the user: its value;
//  4. Bucket(flag, user) < Rollout*100: true, else false.
//
// Built-in flags (Builtins, for example StreamingV2 = "realtime-streaming-v2", default
// ON at 100%) apply until a change is stored; deleting the stored record restores the
// built-in default.
//
// # Rollout hash
//
// Bucket(flag, user) = FNV-1a 64-bit of the bytes flag + ":" + user, modulo 10000.
// It depends on nothing but the two strings, so a user's assignment is the same on
// every instance and across restarts, and differs between flags. A user is in a
// rollout of p percent when Bucket < p*100; raising p only adds users.
//
// # Stores
//
// KVStore (Open) keeps one record per flag in a JetStream key-value bucket and watches
// it: a change made on any instance reaches every instance's snapshot and its
// subscribers within milliseconds, and survives restarts. Each change is checked
// (name format, rollout range, sizes), written with compare-and-set, logged with slog
// and appended to a bounded audit stream. After a NATS reconnect the store reloads
// the bucket (checked every 250 ms) rather than wait ~10 s for nats.go to notice a
// lost watch consumer. MemoryStore is the same contract in one
// process, for tests and single-process tools.
//
// # HTTP
//
// Handler serves GET /v2/flags, GET /v2/flags/admin, PUT /v2/flags/admin/{name} and
// GET /v2/flags/audit with plain net/http; API holds the same operations for the
// Encore service root.
package flag
