// Service flags serves feature flags, among them realtime-streaming-v2 (the switch
// between WebSocket streaming and long-polling), from the store every instance watches.
// The flags live in the process's realtime server (encore.app/server, logic in
// encore.app/flags/flag); this package declares their endpoints. The admin key is the
// FlagsAdminKey secret (declared with the realtime service's config).
package flags
