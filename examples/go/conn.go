package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// connFlags are how a client reaches a secured rmt service: the flags of `rmt status`,
// `rmt submit` and examples/python/rmt_client.py.
type connFlags struct {
	tlsCA, tlsCert, tlsKey, tlsServerName, tokenFile string
}

func (c *connFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.tlsCA, "tls-ca", "", "PEM CA to verify the service: call it over TLS")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "PEM client certificate (mutual TLS), with -tls-key")
	fs.StringVar(&c.tlsKey, "tls-key", "", "PEM private key of -tls-cert")
	fs.StringVar(&c.tlsServerName, "tls-server-name", "", "name to verify in the service's certificate")
	fs.StringVar(&c.tokenFile, "auth-token-file", "", "file holding the bearer token of a service started with one")
}

func (c *connFlags) tls() bool { return c.tlsCA != "" || c.tlsCert != "" }

func (c *connFlags) check() error {
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return errors.New("-tls-cert and -tls-key go together")
	}
	if c.tlsServerName != "" && !c.tls() {
		return errors.New("-tls-server-name needs TLS (-tls-ca or -tls-cert)")
	}
	return nil
}

func (c *connFlags) dialOptions() ([]grpc.DialOption, error) {
	var opts []grpc.DialOption
	if c.tls() {
		// A client certificate without a CA: the system's roots verify the service.
		cfg := &tls.Config{ServerName: c.tlsServerName, MinVersion: tls.VersionTLS12}
		if c.tlsCA != "" {
			pem, err := os.ReadFile(c.tlsCA)
			if err != nil {
				return nil, fmt.Errorf("-tls-ca: %w", err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("-tls-ca: no PEM certificate in %s", c.tlsCA)
			}
		}
		if c.tlsCert != "" {
			pair, err := tls.LoadX509KeyPair(c.tlsCert, c.tlsKey)
			if err != nil {
				return nil, fmt.Errorf("-tls-cert/-tls-key: %w", err)
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	} else {
		opts = append(opts, grpc.WithInsecure())
	}
	if c.tokenFile != "" {
		b, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("-auth-token-file: %w", err)
		}
		token := strings.TrimSpace(string(b))
		if token == "" {
			return nil, fmt.Errorf("-auth-token-file: %s is empty", c.tokenFile)
		}
		opts = append(opts, grpc.WithPerRPCCredentials(bearer{token: token, secure: c.tls()}))
	}
	return opts, nil
}

// bearer sends `authorization: Bearer <token>` with every call, as rmt's services expect.
type bearer struct {
	token  string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

// The services accept a token on a loopback cluster without TLS (rmt up --auth token), so the
// token is not held back there; over TLS grpc refuses to send it on a plaintext channel.
func (b bearer) RequireTransportSecurity() bool { return b.secure }
