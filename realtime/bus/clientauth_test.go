package bus

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"encore.app/internal/testutil"
	"encore.app/realtime/protocol"
)

func TestClientAuthValidation(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "x")
	if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, a := range map[string]ClientAuth{
		"two methods":      {Token: "t", User: "u", Password: "p"},
		"user only":        {User: "u"},
		"password only":    {Password: "p"},
		"cert without key": {TLSCert: f},
		"key without cert": {TLSKey: f},
		"missing creds":    {CredsFile: filepath.Join(dir, "nope.creds")},
		"missing CA":       {TLSCA: filepath.Join(dir, "nope.pem")},
		"bad nkey seed":    {NKeyFile: f},
	} {
		if _, err := a.Options(); !errors.Is(err, ErrClientAuth) {
			t.Errorf("%s: err %v, want ErrClientAuth", name, err)
		}
	}
	if opts, err := (ClientAuth{}).Options(); err != nil || len(opts) != 0 {
		t.Errorf("zero: %v %v", opts, err)
	}
}

// A NATS server with TLS (verifying client certificates) and a password: the bus
// connects with ClientAuth's options and works; without them it is refused.
func TestClientAuthTLSAndPassword(t *testing.T) {
	dir := t.TempDir()
	ca, caKey, caPEM := newCA(t)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile := write("ca.pem", caPEM)
	srvCert, srvKey := newLeaf(t, ca, caKey, false)
	cliCert, cliKey := newLeaf(t, ca, caKey, true)
	certFile, keyFile := write("client.pem", cliCert), write("client-key.pem", cliKey)

	pair, err := tls.X509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		Username: "rt", Password: "s3cret",
		TLS: true, TLSVerify: true, TLSTimeout: 10, // seconds: a loaded machine handshakes slowly
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool,
			ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12},
	})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	defer func() { s.Shutdown(); s.WaitForShutdown() }()
	if !s.ReadyForConnections(testutil.Patience) {
		t.Fatal("server not ready")
	}
	url := s.ClientURL()
	ctx := testutil.Context(t)

	for name, a := range map[string]ClientAuth{
		"no TLS":         {User: "rt", Password: "s3cret"},
		"no client cert": {User: "rt", Password: "s3cret", TLSCA: caFile},
		"bad password":   {User: "rt", Password: "wrong", TLSCA: caFile, TLSCert: certFile, TLSKey: keyFile},
	} {
		opts, err := a.Options()
		if err != nil {
			t.Fatal(err)
		}
		b, err := NewJetStream(ctx, Config{URL: url, NATSOptions: opts, Logger: testLogger(t)})
		if err == nil {
			b.Close()
			t.Errorf("%s: connected", name)
		}
	}

	a := ClientAuth{User: "rt", Password: "s3cret", TLSCA: caFile, TLSCert: certFile, TLSKey: keyFile}
	opts, err := a.Options()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewJetStream(ctx, Config{URL: url, NATSOptions: opts, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("connect with TLS and password: %v", err)
	}
	defer b.Close()
	if !b.Conn().TLSRequired() {
		t.Error("connection is not TLS")
	}
	acks, err := b.Publish(ctx, []*protocol.Event{{Channel: "a", ID: "e1"}})
	if err != nil || len(acks) != 1 || acks[0].Seq != 1 {
		t.Fatalf("publish over TLS: %v %v", acks, err)
	}
}

func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func newLeaf(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, client bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "leaf"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}
