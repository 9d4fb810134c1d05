package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// commit is the fallback commit for builds the toolchain cannot stamp (a git worktree,
// a copy without .git): go build -ldflags "-X main.commit=$(git rev-parse HEAD)".
var commit string

// versionString is what -version prints: the module and its version, the VCS commit
// (and whether the tree was modified) and the Go version, from the build information
// the Go toolchain embeds (or the commit set at link time). A build without either
// says so.
func versionString() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "realtimed (no build information) " + runtime.Version()
	}
	mod, ver := bi.Main.Path, bi.Main.Version
	if mod == "" {
		mod = "encore.app"
	}
	if ver == "" {
		ver = "(devel)"
	}
	var rev, at string
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if rev == "" {
		rev = commit
	}
	var b strings.Builder
	fmt.Fprintf(&b, "realtimed %s %s", mod, ver)
	switch {
	case rev == "":
		b.WriteString(" commit unknown (built without VCS information: go build -buildvcs=true in a git clone, or -ldflags \"-X main.commit=<sha>\")")
	default:
		fmt.Fprintf(&b, " commit %s", rev)
		if at != "" {
			fmt.Fprintf(&b, " (%s)", at)
		}
		if modified {
			b.WriteString(" modified")
		}
	}
	fmt.Fprintf(&b, " %s", bi.GoVersion)
	return b.String()
}
