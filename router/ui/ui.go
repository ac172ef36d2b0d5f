// Package ui holds knactor's status page, served by the router at /ui: plain HTML, CSS and
// JavaScript without a build step, and uPlot (assets/README.md) for the charts, all embedded in
// the binary so the page works offline. The page reads the router's GET /v1/status once a
// second; it holds no data itself, so the router serves it without a token.
package ui

import (
	"embed"
	"path"
	"strings"
)

//go:embed assets/index.html assets/app.js assets/style.css assets/uPlot.iife.min.js assets/uPlot.min.css
var assets embed.FS

// Asset is one file of the page.
type Asset struct {
	Body        []byte
	ContentType string
}

// Lookup returns the asset at name, a path below /ui/ ("" and "index.html" are the page).
func Lookup(name string) (Asset, bool) {
	name = strings.TrimPrefix(name, "/")
	if name == "" {
		name = "index.html"
	}
	if strings.Contains(name, "/") || strings.HasPrefix(name, ".") {
		return Asset{}, false
	}
	b, err := assets.ReadFile("assets/" + name)
	if err != nil {
		return Asset{}, false
	}
	return Asset{Body: b, ContentType: contentType(path.Ext(name))}, true
}

func contentType(ext string) string {
	switch ext {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	}
	return "application/octet-stream"
}
