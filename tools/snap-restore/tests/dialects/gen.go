// Writes a tar of SRC to OUT with Go's archive/tar, in FORMAT (ustar, gnu, pax).
// Members a format cannot hold are left out (named on stderr).
package main

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

func main() {
	src, out, format := os.Args[1], os.Args[2], os.Args[3]
	f, err := os.Create(out)
	if err != nil {
		panic(err)
	}
	tw := tar.NewWriter(f)
	fm := map[string]tar.Format{"pax": tar.FormatPAX, "gnu": tar.FormatGNU, "ustar": tar.FormatUSTAR}[format]
	filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if rel == "." {
			return nil
		}
		link := ""
		if info.Mode()&os.ModeSymlink != 0 {
			link, _ = os.Readlink(p)
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			fmt.Fprintln(os.Stderr, rel, err)
			return nil
		}
		h.Name = rel
		if info.IsDir() {
			h.Name += "/"
		}
		h.Format = fm
		if fm != tar.FormatPAX {
			h.AccessTime, h.ChangeTime = time.Time{}, time.Time{}
		}
		if err := tw.WriteHeader(h); err != nil {
			fmt.Fprintln(os.Stderr, rel, err)
			return nil
		}
		if info.Mode().IsRegular() {
			r, _ := os.Open(p)
			io.Copy(tw, r)
			r.Close()
		}
		return nil
	})
	if err := tw.Close(); err != nil {
		panic(err)
	}
	f.Close()
}
