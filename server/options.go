package server

import (
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Options are every setting of the server, for both shells. Each field declares once,
// in its tags, how the user sets it:
//
//	flag     the flag of cmd/realtimed ("-batch-window")
//	env      its environment variable (REALTIME_BATCH_WINDOW)
//	cue      its key in the Encore config, realtime/config.cue (BatchWindow)
//	secret   the Encore secret that carries it instead (PublisherKey)
//	default  the default of both shells, in the flag's syntax
//	min      the smallest value Validate accepts (numbers and durations)
//	only     "standalone: why" or "encore: why" when one shell has no way to set it
//	help     one line for -h, the generated CUE file and docs/settings.md
//
// Defaults returns the defaults; cmd/realtimed registers its flags from these tags
// (RegisterFlags), the Encore shell maps its config and secrets onto them (FromEncore),
// and realtime/config_gen.go, realtime/defaults.cue and docs/settings.md are generated
// from them (go generate ./server), so defaults and docs cannot drift.
//
// Env is not a setting: the shell fills it.
type Options struct {
	// Process and storage.
	Addr         string        `flag:"addr" env:"REALTIME_ADDR" default:"127.0.0.1:4000" only:"standalone: an Encore app listens where encore run --port or the platform says" help:"listen address"`
	DataDir      string        `flag:"data" env:"REALTIME_DATA" cue:"DataDir" default:".realtime" help:"data directory (embedded NATS storage, instance name, lock); relative to the working directory, under Encore to the app root, where it must be hidden (.name) or outside: encore run reloads the app when files in the app change"`
	Instance     string        `flag:"instance" env:"REALTIME_INSTANCE" cue:"Instance" help:"instance name (default <hostname>-<random>, kept in <data>/instance-id)"`
	LogFormat    string        `flag:"log-format" env:"REALTIME_LOG_FORMAT" default:"text" only:"standalone: Encore collects and formats the logs itself" help:"text or json"`
	LogLevel     string        `flag:"log-level" env:"REALTIME_LOG_LEVEL" default:"info" only:"standalone: Encore collects and filters the logs itself" help:"debug, info, warn, error"`
	DrainTimeout time.Duration `flag:"drain-timeout" env:"REALTIME_DRAIN_TIMEOUT" cue:"DrainTimeout" default:"10s" min:"0s" help:"how long shutdown waits for connections to flush (under Encore at most its shutdown window)"`
	DrainDelay   time.Duration `flag:"drain-delay" env:"REALTIME_DRAIN_DELAY" default:"5s" min:"0s" only:"standalone: Encore stops routing requests to an instance as soon as it shuts down, so there is nothing to announce" help:"on SIGTERM, how long /readyz, new streams and polls answer 503 + Retry-After (while open connections go on) before clients are told to move; a second signal ends it early"`

	// HTTP server timeouts (the standalone server; under Encore its own server and
	// gateway hold the connections). WebSocket connections are exempt from the read and
	// write timeouts (they have heartbeats and per-frame write deadlines), long-polls get
	// their wait on top, the dashboard's event stream has none.
	ReadHeaderTimeout time.Duration `flag:"read-header-timeout" env:"REALTIME_READ_HEADER_TIMEOUT" default:"10s" min:"1ms" only:"standalone: Encore's server and gateway own the connections" help:"time to read a request's headers"`
	ReadTimeout       time.Duration `flag:"read-timeout" env:"REALTIME_READ_TIMEOUT" default:"30s" min:"1ms" only:"standalone: Encore's server and gateway own the connections" help:"time to read a whole request, body included (not WebSocket)"`
	WriteTimeout      time.Duration `flag:"write-timeout" env:"REALTIME_WRITE_TIMEOUT" default:"30s" min:"1ms" only:"standalone: Encore's server and gateway own the connections" help:"time to write a response (not WebSocket; long-polls get their wait on top)"`
	IdleTimeout       time.Duration `flag:"idle-timeout" env:"REALTIME_IDLE_TIMEOUT" default:"120s" min:"1ms" only:"standalone: Encore's server and gateway own the connections" help:"an idle keep-alive HTTP connection is closed after this (keep it above the load balancer's idle timeout)"`
	Demo              bool          `flag:"demo" env:"REALTIME_DEMO" cue:"Demo" default:"true" help:"serve the demo page at /"`
	Pprof             bool          `flag:"pprof" env:"REALTIME_PPROF" default:"false" only:"standalone: under Encore the profiles would be public endpoints of the app; Encore traces requests itself" help:"serve /debug/pprof/ and /debug/vars (profiling; keep the listener on loopback)"`

	// The bus. Bus chooses the kind (EffectiveBus resolves auto); backend.go builds it
	// with the stores that live next to it. NATS settings apply to the NATS bus only.
	Bus            string        `flag:"bus" env:"REALTIME_BUS" cue:"Bus" default:"auto" help:"event bus: auto, nats or postgres; auto is nats when the NATS URL is set, else postgres when there is a database (the Postgres URL; under Encore always: the app's database realtime), else the embedded NATS"`
	PostgresURL    string        `flag:"postgres-url" env:"REALTIME_POSTGRES_URL" only:"standalone: under Encore the Postgres bus uses the app's database realtime (sqldb.NewDatabase in the realtime service), which Encore provisions and migrates" help:"PostgreSQL database (postgres://user:password@host:5432/db?sslmode=require) for the Postgres bus, flags, fleet health and connection cap; its tables are created at start (realtime/pgmigrations)"`
	NATSURL        string        `flag:"nats-url" env:"REALTIME_NATS_URL" secret:"NATSURL" help:"external NATS URL(s), comma-separated; empty starts an embedded server"`
	NATSListen     string        `flag:"nats-listen" env:"REALTIME_NATS_LISTEN" only:"standalone: Encore instances meet on an external NATS named by the NATSURL secret" help:"let the embedded NATS also listen on this address (e.g. 127.0.0.1:4222) so other instances can join it; off loopback it requires -nats-token or -nats-user"`
	NATSCreds      string        `flag:"nats-creds" env:"REALTIME_NATS_CREDS" only:"standalone: under Encore put credentials in the NATSURL secret (nats://user:password@host, tls:// for TLS)" help:"NATS credentials file (user JWT + NKey seed)"`
	NATSNKey       string        `flag:"nats-nkey" env:"REALTIME_NATS_NKEY" only:"standalone: under Encore put credentials in the NATSURL secret" help:"NATS NKey seed file"`
	NATSUser       string        `flag:"nats-user" env:"REALTIME_NATS_USER" only:"standalone: under Encore put credentials in the NATSURL secret" help:"NATS user (with -nats-password; with -nats-listen: the user the embedded server requires)"`
	NATSPassword   string        `flag:"nats-password" env:"REALTIME_NATS_PASSWORD" only:"standalone: under Encore put credentials in the NATSURL secret" help:"NATS password"`
	NATSToken      string        `flag:"nats-token" env:"REALTIME_NATS_TOKEN" only:"standalone: under Encore put credentials in the NATSURL secret" help:"NATS authentication token (with -nats-listen: the token the embedded server requires of its clients)"`
	NATSTLSCA      string        `flag:"nats-tls-ca" env:"REALTIME_NATS_TLS_CA" only:"standalone: files; under Encore use a tls:// NATSURL with a publicly trusted certificate" help:"PEM file of CAs for the NATS servers' certificates (implies TLS)"`
	NATSTLSCert    string        `flag:"nats-tls-cert" env:"REALTIME_NATS_TLS_CERT" only:"standalone: files; under Encore use a tls:// NATSURL" help:"client certificate for NATS mutual TLS (with -nats-tls-key)"`
	NATSTLSKey     string        `flag:"nats-tls-key" env:"REALTIME_NATS_TLS_KEY" only:"standalone: files; under Encore use a tls:// NATSURL" help:"client key for NATS mutual TLS"`
	RetentionAge   time.Duration `flag:"retention-age" env:"REALTIME_RETENTION_AGE" cue:"RetentionAge" default:"24h" min:"1s" help:"keep events this long for replay"`
	RetentionMB    int           `flag:"retention-mb" env:"REALTIME_RETENTION_MB" cue:"RetentionMB" default:"1024" min:"1" help:"keep at most this many MiB of events"`
	Replicas       int           `flag:"replicas" env:"REALTIME_REPLICAS" cue:"Replicas" default:"1" min:"1" help:"stream replicas: 1 with the embedded server, 3 on a NATS cluster of 3 or more nodes"`
	SingleInstance bool          `cue:"SingleInstance" default:"false" only:"encore: the standalone server has no multi-instance guard (-postgres-url, -nats-url or -nats-listen join instances)" help:"outside local development, allow the embedded NATS (Bus nats without the NATSURL secret): this app runs exactly one instance"`

	// The engine (docs/architecture.md).
	BatchWindow       time.Duration `flag:"batch-window" env:"REALTIME_BATCH_WINDOW" cue:"BatchWindow" default:"20ms" min:"1ns" help:"coalescing window after a frame"`
	BatchMax          int           `flag:"batch-max" env:"REALTIME_BATCH_MAX" cue:"BatchMax" default:"100" min:"1" help:"most events per frame"`
	BatchWindowMax    time.Duration `flag:"batch-window-max" env:"REALTIME_BATCH_WINDOW_MAX" cue:"BatchWindowMax" default:"50ms" min:"1ns" help:"widest batch window under load (see frame budget); at most the batch window keeps it fixed"`
	FrameBudget       int           `flag:"frame-budget" env:"REALTIME_FRAME_BUDGET" cue:"FrameBudget" default:"200000" min:"1" help:"event frames per second past which the batch window widens"`
	Writers           int           `flag:"writers" env:"REALTIME_WRITERS" cue:"Writers" default:"0" min:"0" help:"goroutines writing to connections (never blocked by a socket); 0 = GOMAXPROCS - 1, at least 1; the slow lane has one more"`
	QueueEvents       int           `flag:"queue-events" env:"REALTIME_QUEUE_EVENTS" cue:"QueueEvents" default:"4096" min:"1" help:"per-connection queue bound (events)"`
	QueueBytes        int           `flag:"queue-bytes" env:"REALTIME_QUEUE_BYTES" cue:"QueueBytes" default:"4194304" min:"1" help:"per-connection queue bound (bytes)"`
	QueueBudgetMB     int           `flag:"queue-budget-mb" env:"REALTIME_QUEUE_BUDGET_MB" cue:"QueueBudgetMB" default:"0" min:"0" help:"MiB queued to all connections together before the largest holders are closed (4105); 0 = 1/64 of memory, 64-1024"`
	SendBuffer        int           `flag:"send-buffer" env:"REALTIME_SEND_BUFFER" cue:"SendBuffer" default:"262144" min:"-1" help:"most a stream socket's kernel send buffer grows to (SO_SNDBUF, bytes; it starts at 8 KiB); -1 keeps the kernel's autotuning"`
	CompressThreshold int           `flag:"compress-threshold" env:"REALTIME_COMPRESS_THRESHOLD" cue:"CompressThreshold" default:"1024" min:"-1" help:"deflate frames of at least this many bytes; -1 disables compression"`
	Heartbeat         time.Duration `flag:"heartbeat" env:"REALTIME_HEARTBEAT" cue:"Heartbeat" default:"25s" min:"100ms" help:"server ping interval; a connection silent for twice this is closed"`
	Window            int           `flag:"window" env:"REALTIME_WINDOW" cue:"Window" default:"10000" min:"1" help:"in-memory replay window (events)"`
	MaxSubscriptions  int           `flag:"max-subscriptions" env:"REALTIME_MAX_SUBSCRIPTIONS" cue:"MaxSubscriptions" default:"100" min:"1" help:"channels per connection"`
	MaxEventBytes     int           `flag:"max-event-bytes" env:"REALTIME_MAX_EVENT_BYTES" cue:"MaxEventBytes" default:"65536" min:"1" help:"largest data of one published event"`
	MaxPublishEvents  int           `flag:"max-publish-events" env:"REALTIME_MAX_PUBLISH_EVENTS" cue:"MaxPublishEvents" default:"1000" min:"1" help:"most events in one publish request"`
	MaxPublishBytes   int           `flag:"max-publish-bytes" env:"REALTIME_MAX_PUBLISH_BYTES" cue:"MaxPublishBytes" default:"1048576" min:"1" help:"largest publish request body"`
	ValidatePayloads  bool          `flag:"validate-payloads" env:"REALTIME_VALIDATE_PAYLOADS" cue:"ValidatePayloads" default:"false" help:"refuse published events on typed channels (realtime/channels) whose data does not match the payload type (its JSON Schema); counted as publishRefusals payload"`

	// Presence and history (docs/protocol.md "Presence", "History").
	Presence           bool          `flag:"presence" env:"REALTIME_PRESENCE" cue:"Presence" default:"true" help:"track who is subscribed to every channel across the cluster (presence snapshots, join and leave events)"`
	PresenceTTL        time.Duration `flag:"presence-ttl" env:"REALTIME_PRESENCE_TTL" cue:"PresenceTTL" default:"15s" min:"1s" help:"a dead instance's members disappear from presence within this (each instance heartbeats every third of it)"`
	PresenceGrace      time.Duration `flag:"presence-grace" env:"REALTIME_PRESENCE_GRACE" cue:"PresenceGrace" default:"5s" min:"1ms" help:"a user whose last connection to a channel closed stays a member this long: a reconnect within it announces no leave or join"`
	PresenceMaxMembers int           `flag:"presence-max-members" env:"REALTIME_PRESENCE_MAX_MEMBERS" cue:"PresenceMaxMembers" default:"1000" min:"1" help:"most members in one presence snapshot, and users listed per instance and channel (counts beyond stay exact, events cover the listed ones)"`
	HistoryMaxEvents   int           `flag:"history-max-events" env:"REALTIME_HISTORY_MAX_EVENTS" cue:"HistoryMaxEvents" default:"1000" min:"1" help:"most events in one history answer (a request asks for 100 by default)"`
	HistoryMaxBytes    int           `flag:"history-max-bytes" env:"REALTIME_HISTORY_MAX_BYTES" cue:"HistoryMaxBytes" default:"1048576" min:"4096" help:"largest history answer in bytes (at least one event is always answered)"`

	// Keys. Empty keys mean dev mode in local development (fixed, loudly logged keys);
	// outside it (Env.Hosted) the feature is off instead.
	PublisherKey string `flag:"publisher-key" env:"REALTIME_PUBLISHER_KEY" secret:"PublisherKey" help:"key for POST /v2/realtime/publish (Authorization: Bearer or X-Publisher-Key); empty = dev mode with key \"dev\""`
	AdminKey     string `flag:"admin-key" env:"REALTIME_ADMIN_KEY" secret:"FlagsAdminKey" help:"flags admin key (Bearer, at least 16 bytes) for /v2/flags/admin; empty = dev mode with a fixed key"`
	TokenKeys    string `flag:"token-keys" env:"REALTIME_TOKEN_KEYS" secret:"TokenKeys" help:"subscriber token keys \"kid:secret,...\" (HS256, >=32-byte secrets; the first signs); empty = dev mode: anonymous, public channels only"`

	// Channel access and limits (docs/security.md).
	PublicPrefixes   []string      `flag:"public-prefixes" env:"REALTIME_PUBLIC_PREFIXES" cue:"PublicPrefixes" default:"public:,public." help:"channel prefixes everyone may read (comma-separated); \"*\" = every channel except user:<id>..."`
	Origins          []string      `flag:"origins" env:"REALTIME_ORIGINS" cue:"Origins" help:"allowed browser Origin host patterns (comma-separated; default: same host only)"`
	DevMint          bool          `flag:"dev-mint" env:"REALTIME_DEV_MINT" cue:"DevMint" default:"false" help:"serve GET /v2/realtime/dev/token?user=&ttl=&channels= to loopback clients (development only)"`
	ClientIPHeader   string        `flag:"client-ip-header" env:"REALTIME_CLIENT_IP_HEADER" cue:"ClientIPHeader" help:"behind a trusted proxy: header whose last address is the client (e.g. X-Forwarded-For); empty = the socket address"`
	MaxConnsPerUser  int           `flag:"max-conns-per-user" env:"REALTIME_MAX_CONNS_PER_USER" cue:"MaxConnsPerUser" default:"10" min:"0" help:"concurrent connections per user across the cluster; 0 disables"`
	ConnCapTTL       time.Duration `flag:"conn-cap-ttl" env:"REALTIME_CONN_CAP_TTL" cue:"ConnCapTTL" default:"30s" min:"1s" help:"a dead instance's connections stop counting after this"`
	ConnectRate      float64       `flag:"connect-rate" env:"REALTIME_CONNECT_RATE" cue:"ConnectRate" default:"1" min:"0" help:"stream connect attempts per second per user; 0 disables"`
	ConnectBurst     int           `flag:"connect-burst" env:"REALTIME_CONNECT_BURST" cue:"ConnectBurst" default:"10" min:"1" help:"burst of connect attempts per user"`
	IPConnectRate    float64       `flag:"ip-connect-rate" env:"REALTIME_IP_CONNECT_RATE" cue:"IPConnectRate" default:"50" min:"0" help:"new anonymous stream sessions per second per client IP (authenticated users are charged per user instead); 0 disables"`
	IPConnectBurst   int           `flag:"ip-connect-burst" env:"REALTIME_IP_CONNECT_BURST" cue:"IPConnectBurst" default:"1000" min:"1" help:"burst of new anonymous stream sessions per client IP (thousands of users behind one NAT)"`
	IPResumeRate     float64       `flag:"ip-resume-rate" env:"REALTIME_IP_RESUME_RATE" cue:"IPResumeRate" default:"500" min:"0" help:"resuming anonymous stream sessions (a valid cursor) per second per client IP, a budget apart from new sessions; 0 disables"`
	IPResumeBurst    int           `flag:"ip-resume-burst" env:"REALTIME_IP_RESUME_BURST" cue:"IPResumeBurst" default:"5000" min:"1" help:"burst of resuming anonymous stream sessions per client IP (everyone behind a NAT comes back at once after a cut)"`
	MaxConnections   int           `flag:"max-connections" env:"REALTIME_MAX_CONNECTIONS" cue:"MaxConnections" default:"0" min:"0" help:"open connections of this instance; 0 = unbounded"`
	AdmitRate        float64       `flag:"admit-rate" env:"REALTIME_ADMIT_RATE" cue:"AdmitRate" default:"0" min:"0" help:"connections admitted per second by this instance; 0 = unbounded"`
	ResumeShare      float64       `flag:"resume-share" env:"REALTIME_RESUME_SHARE" cue:"ResumeShare" default:"0.2" min:"0" help:"share (below 1) of max connections and admit rate reserved for resuming sessions"`
	ClientMsgRate    float64       `flag:"client-msg-rate" env:"REALTIME_CLIENT_MSG_RATE" cue:"ClientMsgRate" default:"10" min:"-1" help:"frames per second a connection may send; -1 disables"`
	ClientMsgBurst   int           `flag:"client-msg-burst" env:"REALTIME_CLIENT_MSG_BURST" cue:"ClientMsgBurst" default:"50" min:"1" help:"burst of client frames"`
	MaxFrameBytes    int           `flag:"max-frame-bytes" env:"REALTIME_MAX_FRAME_BYTES" cue:"MaxFrameBytes" default:"65536" min:"1" help:"largest client frame (bigger closes 1009)"`
	MaxChannelLength int           `flag:"max-channel-length" env:"REALTIME_MAX_CHANNEL_LENGTH" cue:"MaxChannelLength" default:"128" min:"1" help:"longest channel name"`
	BusTimeout       time.Duration `flag:"bus-timeout" env:"REALTIME_BUS_TIMEOUT" cue:"BusTimeout" default:"1s" min:"1ms" help:"bound of one bus publish or info call (circuit breaker)"`
	BreakerFailures  int           `flag:"breaker-failures" env:"REALTIME_BREAKER_FAILURES" cue:"BreakerFailures" default:"3" min:"1" help:"consecutive bus failures that open the circuit"`
	BreakerOpen      time.Duration `flag:"breaker-open" env:"REALTIME_BREAKER_OPEN" cue:"BreakerOpen" default:"2s" min:"1ms" help:"how long the open circuit fails fast before probing"`

	// Env is what the shell knows about where the server runs. Not a setting.
	Env Environment `setting:"-"`
}

// Shell names the program that fills the Options; errors name settings in its terms.
type Shell int

// Shells.
const (
	Standalone Shell = iota // cmd/realtimed: flags and environment variables
	Encore                  // the Encore service roots: realtime/config.cue and secrets
)

// Environment is filled by the shell, not by the user.
type Environment struct {
	// Shell decides how errors name a setting (flag or CUE key / secret).
	Shell Shell
	// Hosted is true outside local development (Encore Cloud or a self-hosted
	// deployment of the Encore app): empty keys turn features off instead of falling
	// back to dev keys, and the embedded NATS needs SingleInstance. The standalone
	// server is never hosted in this sense.
	Hosted bool
	// Root resolves a relative DataDir (default: the working directory).
	Root string
	// LockWait is how long New waits for another process to release the data
	// directory (0: refuse at once). The Encore shell waits: a live reload starts the
	// new process before the old one has stopped.
	LockWait time.Duration
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// Postgres returns the pool of the database the shell provides (the Encore shell:
	// the realtime service's database, migrated by Encore); nil when it has none (the
	// standalone server, whose PostgresURL names a database instead). With it, Bus
	// auto means postgres unless the NATS URL is set. The pool stays the shell's: the
	// server never closes it.
	Postgres func() (*pgxpool.Pool, error)
	// Namespace, when set, keeps servers that share one database apart: the Postgres
	// stream and the flag, fleet health and connection cap buckets get it as a suffix
	// ("realtime-<namespace>"). Empty: the default names, which every instance of the
	// app shares. The Encore shell sets one per process under encore test, whose test
	// processes share the test database.
	Namespace string
}

// Defaults returns the options with every setting at its default.
func Defaults() Options {
	var o Options
	for _, s := range Settings() {
		if err := s.set(&o, s.Default); err != nil {
			panic("server: bad default of " + s.Field + ": " + err.Error()) // caught by the package's tests
		}
	}
	return o
}
