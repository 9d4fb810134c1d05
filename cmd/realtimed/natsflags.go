package main

import (
	"flag"
	"os"

	"encore.app/realtime/bus"
)

// natsAuthFlags registers the NATS client options for an external NATS (-nats-url):
// credentials and TLS, each with its environment variable.
func natsAuthFlags(fs *flag.FlagSet, a *bus.ClientAuth) {
	str := func(p *string, name, env, help string) {
		fs.StringVar(p, name, os.Getenv(env), help+" ($"+env+")")
	}
	str(&a.CredsFile, "nats-creds", "REALTIME_NATS_CREDS", "NATS credentials file (user JWT + NKey seed)")
	str(&a.NKeyFile, "nats-nkey", "REALTIME_NATS_NKEY", "NATS NKey seed file")
	str(&a.User, "nats-user", "REALTIME_NATS_USER", "NATS user (with -nats-password)")
	str(&a.Password, "nats-password", "REALTIME_NATS_PASSWORD", "NATS password")
	str(&a.Token, "nats-token", "REALTIME_NATS_TOKEN", "NATS authentication token")
	str(&a.TLSCA, "nats-tls-ca", "REALTIME_NATS_TLS_CA", "PEM file of CAs for the NATS servers' certificates (implies TLS)")
	str(&a.TLSCert, "nats-tls-cert", "REALTIME_NATS_TLS_CERT", "client certificate for NATS mutual TLS (with -nats-tls-key)")
	str(&a.TLSKey, "nats-tls-key", "REALTIME_NATS_TLS_KEY", "client key for NATS mutual TLS")
}
