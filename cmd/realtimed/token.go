package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"encore.app/realtime/auth"
)

// tokenCommand is `realtimed token`: mint a subscriber token with the configured keys.
func tokenCommand(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("realtimed token", flag.ContinueOnError)
	fs.SetOutput(out)
	// The keys' default is read after parsing, never shown: -h must not print a secret.
	keys := fs.String("keys", "", "token keys \"kid:secret,...\" (the first signs); default $REALTIME_TOKEN_KEYS")
	user := fs.String("user", "", "user id (sub claim), required")
	ttl := fs.Duration("ttl", time.Hour, "validity")
	channels := fs.String("channels", "", "comma-separated channels or globs the user may read (besides public and user:<id>:...)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil // -h exits 0
		}
		return err
	}
	if *keys == "" {
		*keys = os.Getenv("REALTIME_TOKEN_KEYS")
	}
	if *keys == "" {
		return errors.New("token: -keys or $REALTIME_TOKEN_KEYS required")
	}
	k, err := auth.ParseKeys(*keys)
	if err != nil {
		return err
	}
	var chs []string
	for _, c := range strings.Split(*channels, ",") {
		if c = strings.TrimSpace(c); c != "" {
			chs = append(chs, c)
		}
	}
	tok, err := k.Mint(*user, *ttl, chs)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, tok)
	return err
}
