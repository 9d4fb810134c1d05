// Command gensettings writes the files generated from the tags of server.Options
// (server.Generated) under the module root given as its argument.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"encore.app/server"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gensettings <module root>")
		os.Exit(2)
	}
	files, err := server.Generated()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gensettings:", err)
		os.Exit(1)
	}
	for p, b := range files {
		if err := os.WriteFile(filepath.Join(os.Args[1], p), b, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "gensettings:", err)
			os.Exit(1)
		}
	}
}
