package bus

import (
	"errors"
	"fmt"
	"os"

	"github.com/nats-io/nats.go"
)

// ClientAuth is how this process authenticates to an external NATS and secures the
// connection: the options NATS users expect (as in the nats CLI). Every field is
// optional; Options turns the set ones into nats.Options for Config.NATSOptions.
type ClientAuth struct {
	// CredsFile is a .creds file (user JWT and NKey seed; NGS/Synadia Cloud, operator
	// mode).
	CredsFile string
	// NKeyFile is a file holding a user NKey seed.
	NKeyFile string
	// User and Password authenticate with a username and password (or put them in the
	// URL: nats://user:pass@host:4222).
	User, Password string
	// Token authenticates with a token.
	Token string
	// TLSCA is a PEM file of CAs that sign the servers' certificates (else the system
	// roots). TLSCert and TLSKey are a client certificate and its key, for servers
	// that verify clients (mutual TLS). Any of them makes the connection require TLS.
	TLSCA, TLSCert, TLSKey string
}

// ErrClientAuth wraps every error of ClientAuth.Options.
var ErrClientAuth = errors.New("bus: nats client options")

// IsZero reports whether no option is set.
func (a ClientAuth) IsZero() bool { return a == ClientAuth{} }

// Options checks the settings (one authentication method; files readable; a
// certificate with its key) and returns the matching nats.Options.
func (a ClientAuth) Options() ([]nats.Option, error) {
	methods := 0
	for _, set := range []bool{a.CredsFile != "", a.NKeyFile != "", a.User != "" || a.Password != "", a.Token != ""} {
		if set {
			methods++
		}
	}
	if methods > 1 {
		return nil, fmt.Errorf("%w: give one of credentials file, nkey file, user/password, token", ErrClientAuth)
	}
	if (a.User == "") != (a.Password == "") {
		return nil, fmt.Errorf("%w: user and password go together", ErrClientAuth)
	}
	if (a.TLSCert == "") != (a.TLSKey == "") {
		return nil, fmt.Errorf("%w: TLS client certificate and key go together", ErrClientAuth)
	}
	for what, f := range map[string]string{"credentials file": a.CredsFile, "nkey file": a.NKeyFile,
		"TLS CA file": a.TLSCA, "TLS certificate": a.TLSCert, "TLS key": a.TLSKey} {
		if f == "" {
			continue
		}
		if _, err := os.ReadFile(f); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrClientAuth, what, err)
		}
	}
	var opts []nats.Option
	switch {
	case a.CredsFile != "":
		opts = append(opts, nats.UserCredentials(a.CredsFile))
	case a.NKeyFile != "":
		o, err := nats.NkeyOptionFromSeed(a.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: nkey file: %w", ErrClientAuth, err)
		}
		opts = append(opts, o)
	case a.User != "":
		opts = append(opts, nats.UserInfo(a.User, a.Password))
	case a.Token != "":
		opts = append(opts, nats.Token(a.Token))
	}
	if a.TLSCA != "" {
		opts = append(opts, nats.RootCAs(a.TLSCA))
	}
	if a.TLSCert != "" {
		opts = append(opts, nats.ClientCert(a.TLSCert, a.TLSKey))
	}
	return opts, nil
}
