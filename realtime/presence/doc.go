// Package presence keeps who is subscribed to each channel across every realtime
// instance, and tells the instances' subscribers who joins and who leaves.
//
// Each instance's Tracker counts its own members (user -> connections, per channel)
// and writes, per channel, one summary of them to a Store shared by the cluster
// (store_nats.go: a NATS key-value bucket; store_postgres.go: Postgres tables with
// LISTEN/NOTIFY; store_memory.go: one process). Writes are
// coalesced: a channel's summary is written at once when it was not written for
// FlushInterval, else at the end of that interval, so connection churn costs at most
// one write per channel and interval, and a reconnect inside the Grace period (the
// user's last connection gone, a new one back) costs none and announces nothing.
//
// Liveness is per instance, not per member: each instance heartbeats one record every
// TTL/3; a summary counts only while its instance's record is fresh (and of the same
// incarnation: a restarted instance's old summaries are void). So a dead instance's
// members disappear from every view within TTL of its last heartbeat, however many
// channels and members it held, and the steady cost is one small write per instance
// per TTL/3 (plus a rewrite of every summary each RefreshEvery). The lowest-named live
// instance purges a dead one's summaries from the store.
//
// An instance whose connections asked for join and leave events of a channel follows
// that channel's summaries (on NATS one subscription per channel, on Postgres one
// listening connection for all) and merges them into a view:
// a user is present while any live instance lists it; its first listing is a join,
// its last one gone a leave. Snapshots of a followed channel come from the view, in
// the order of its diffs; others read the store once. Summaries list at most
// MaxMembers users (their counts are always exact): channels larger than that on one
// instance get approximate user totals and no events for the unlisted users.
//
// Tracker is safe for concurrent use; Close stops its goroutines and leaves its
// summaries to expire with its heartbeat.
package presence
