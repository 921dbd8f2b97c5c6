package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"go.yaml.in/yaml/v3"

	"github.com/ebbrun/ebb/api"
)

// defaultAPI is where the CLI looks for the API when nothing configures it:
// ebbd's default --api-addr.
const defaultAPI = "http://127.0.0.1:8090"

// fileConfig is the CLI's config file, which `make run` writes:
//
//	api: http://127.0.0.1:8090
//	token: 3f1c...
//	namespace: team-a   # optional; default "default"
//
// Unknown keys are ignored so that a newer ebbd can add some without
// breaking an older CLI.
type fileConfig struct {
	API       string `yaml:"api"`
	Token     string `yaml:"token"`
	Namespace string `yaml:"namespace"`
}

// settings is the resolved endpoint and token, with where each came from so
// error messages can say what to fix.
type settings struct {
	API         string
	Token       string
	ConfigPath  string // the file read, or "" if none
	TokenSource string // "--token", "EBB_TOKEN", the config path, or ""
	// Namespace is where function commands act; "" (not configured)
	// means api.DefaultNamespace.
	Namespace string
}

// overrides are the values given on the command line and in the environment.
type overrides struct {
	configFlag, apiFlag, tokenFlag, namespaceFlag string
}

// defaultConfigPath is $XDG_CONFIG_HOME/ebb/config.yaml, falling back to
// ~/.config/ebb/config.yaml as the XDG base directory spec says. It returns
// "" when neither variable helps.
func defaultConfigPath(getenv func(string) string) string {
	if x := getenv("XDG_CONFIG_HOME"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, "ebb", "config.yaml")
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".config", "ebb", "config.yaml")
	}
	return ""
}

// resolveSettings applies, lowest first: the built-in default, the config
// file, EBB_API/EBB_TOKEN/EBB_NAMESPACE, then --api/--token/--namespace.
// The file is --config, else
// EBB_CONFIG, else the default path; only the default may be missing.
func resolveSettings(o overrides, getenv func(string) string) (settings, error) {
	s := settings{API: defaultAPI}
	path, explicit := o.configFlag, true
	if path == "" {
		path = getenv("EBB_CONFIG")
	}
	if path == "" {
		path, explicit = defaultConfigPath(getenv), false
	}
	if path != "" {
		fc, err := readConfig(path)
		switch {
		case errors.Is(err, fs.ErrNotExist) && !explicit:
		case err != nil:
			return settings{}, &usageError{err: err}
		default:
			s.ConfigPath = path
			if fc.API != "" {
				s.API = fc.API
			}
			if fc.Token != "" {
				s.Token, s.TokenSource = fc.Token, path
			}
			if fc.Namespace != "" {
				s.Namespace = fc.Namespace
			}
		}
	}
	if v := getenv("EBB_API"); v != "" {
		s.API = v
	}
	if v := getenv("EBB_TOKEN"); v != "" {
		s.Token, s.TokenSource = v, "EBB_TOKEN"
	}
	if v := getenv("EBB_NAMESPACE"); v != "" {
		s.Namespace = v
	}
	if o.namespaceFlag != "" {
		s.Namespace = o.namespaceFlag
	}
	if s.Namespace != "" {
		if err := api.ValidateName("namespace", s.Namespace); err != nil {
			return settings{}, &usageError{err: err}
		}
	}
	if o.apiFlag != "" {
		s.API = o.apiFlag
	}
	if o.tokenFlag != "" {
		s.Token, s.TokenSource = o.tokenFlag, "--token"
	}
	return s, nil
}

func readConfig(path string) (fileConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return fileConfig{}, fmt.Errorf("read config: %w", err)
	}
	var fc fileConfig
	if err := yaml.NewDecoder(bytes.NewReader(b)).Decode(&fc); err != nil && !errors.Is(err, io.EOF) {
		return fileConfig{}, fmt.Errorf("config %s: %w", path, err)
	}
	return fc, nil
}
