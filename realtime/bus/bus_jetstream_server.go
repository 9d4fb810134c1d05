package bus

// The embedded nats-server, the connection to an external NATS, and the client options.

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

func (j *JetStream) startEmbedded(ctx context.Context) error {
	opts := &server.Options{
		ServerName: "realtime-bus",
		JetStream:  true,
		StoreDir:   j.cfg.DataDir,
		NoSigs:     true,
		DontListen: j.cfg.ListenAddr == "",
	}
	if j.cfg.ListenAddr != "" {
		host, port, err := net.SplitHostPort(j.cfg.ListenAddr)
		if err != nil {
			return fmt.Errorf("bus: config: ListenAddr: %w", err)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 0 || p > 65535 {
			return fmt.Errorf("bus: config: ListenAddr: bad port %q", port)
		}
		if p == 0 {
			p = server.RANDOM_PORT
		}
		opts.Host, opts.Port = host, p
		if a := j.cfg.ListenAuth; !a.IsZero() {
			if a.CredsFile != "" || a.NKeyFile != "" || a.TLSCA != "" || a.TLSCert != "" || a.TLSKey != "" {
				return fmt.Errorf("bus: config: ListenAuth: the embedded server takes a token or a user and password: %w", ErrClientAuth)
			}
			if _, err := a.Options(); err != nil {
				return fmt.Errorf("bus: config: ListenAuth: %w", err)
			}
			opts.Authorization, opts.Username, opts.Password = a.Token, a.User, a.Password
		}
	}
	if j.cfg.Replicas != 1 {
		j.log.Warn("bus: embedded server is not clustered, using 1 replica", "replicas", j.cfg.Replicas)
		j.cfg.Replicas = 1
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("bus: embedded server: %w", err)
	}
	srv.SetLoggerV2(serverLogger{j.log}, false, false, false)
	j.srv = srv
	srv.Start()
	if !srv.ReadyForConnections(boundedWait(ctx, startTimeout)) || !srv.JetStreamEnabled() {
		return fmt.Errorf("bus: embedded server not ready: %w", ErrUnavailable)
	}
	self := []nats.Option{nats.InProcessServer(srv)}
	if a := j.cfg.ListenAuth; j.cfg.ListenAddr != "" && a.Token != "" {
		self = append(self, nats.Token(a.Token))
	} else if j.cfg.ListenAddr != "" && a.User != "" {
		self = append(self, nats.UserInfo(a.User, a.Password))
	}
	nc, err := nats.Connect("", j.clientOptions(self...)...)
	if err != nil {
		return fmt.Errorf("bus: connect embedded: %w: %w", ErrUnavailable, err)
	}
	j.nc = nc
	// Say what is true: without ListenAddr nothing listens (the client is in-process).
	listen := "none (in-process only)"
	if a := srv.Addr(); j.cfg.ListenAddr != "" && a != nil {
		listen = "nats://" + a.String()
	}
	j.log.Info("bus: embedded nats started", "dir", j.cfg.DataDir, "listen", listen)
	return nil
}

func (j *JetStream) connectExternal(ctx context.Context) error {
	extra := []nats.Option{
		nats.Timeout(boundedWait(ctx, startTimeout)),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		// Notice a dead server (partition, crashed host) in ~30s, not nats.go's default
		// 2 min x 2 pings: until then a live subscription waits on a silent socket.
		nats.PingInterval(10 * time.Second),
		nats.MaxPingsOutstanding(3),
	}
	nc, err := nats.Connect(j.cfg.URL, j.clientOptions(extra...)...)
	if err != nil {
		return fmt.Errorf("bus: connect %s: %w: %w", redactURLs(j.cfg.URL), ErrUnavailable, err)
	}
	j.nc = nc
	j.log.Info("bus: connected to nats", "url", nc.ConnectedUrlRedacted())
	return nil
}

func (j *JetStream) clientOptions(extra ...nats.Option) []nats.Option {
	log := j.log
	opts := []nats.Option{
		nats.Name("realtime-bus"),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("bus: nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("bus: nats reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			log.Warn("bus: nats async error", "err", err)
		}),
	}
	opts = append(opts, extra...)
	return append(opts, j.cfg.NATSOptions...)
}

func redactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			if s := strings.Index(p, "://"); s >= 0 && s < at {
				parts[i] = p[:s+3] + "***" + p[at:]
			}
		}
	}
	return strings.Join(parts, ",")
}

// serverLogger routes the embedded nats-server's log to slog. Notices (startup
// banner, ...) go to Debug.
type serverLogger struct{ l *slog.Logger }

func (s serverLogger) Noticef(format string, v ...any) {
	s.l.Debug("nats-server: " + fmt.Sprintf(format, v...))
}

func (s serverLogger) Warnf(format string, v ...any) {
	s.l.Warn("nats-server: " + fmt.Sprintf(format, v...))
}

func (s serverLogger) Fatalf(format string, v ...any) {
	s.l.Error("nats-server: " + fmt.Sprintf(format, v...))
}

func (s serverLogger) Errorf(format string, v ...any) {
	s.l.Error("nats-server: " + fmt.Sprintf(format, v...))
}

func (s serverLogger) Debugf(format string, v ...any) {
	s.l.Debug("nats-server: " + fmt.Sprintf(format, v...))
}

func (s serverLogger) Tracef(format string, v ...any) {
	s.l.Debug("nats-server: " + fmt.Sprintf(format, v...))
}
