package manifest

import (
	"errors"
	"strings"
)

// SplitCommand splits a command line into words the way a POSIX shell does, without running
// one: words are separated by unquoted blanks (space, tab, newline); 'single quotes' keep
// everything literally; "double quotes" keep everything but \\ \" \$ \` and backslash-newline,
// which are unescaped; outside quotes a backslash escapes the next character and
// backslash-newline joins lines. A quoted empty string yields an empty word. There is no
// expansion of any kind: $VAR, ~, globs, ;, | and # are ordinary characters.
func SplitCommand(s string) ([]string, error) {
	const (
		unquoted = iota
		single
		double
	)
	var (
		words  []string
		word   strings.Builder
		inWord bool
		state  = unquoted
		rs     = []rune(s)
	)
	for i := 0; i < len(rs); i++ {
		c := rs[i]
		switch state {
		case single:
			if c == '\'' {
				state = unquoted
			} else {
				word.WriteRune(c)
			}
		case double:
			switch c {
			case '"':
				state = unquoted
			case '\\':
				if i+1 < len(rs) {
					switch n := rs[i+1]; n {
					case '\\', '"', '$', '`':
						word.WriteRune(n)
						i++
						continue
					case '\n':
						i++
						continue
					}
				}
				word.WriteRune(c)
			default:
				word.WriteRune(c)
			}
		default:
			switch c {
			case ' ', '\t', '\n', '\r':
				if inWord {
					words = append(words, word.String())
					word.Reset()
					inWord = false
				}
			case '\'':
				state, inWord = single, true
			case '"':
				state, inWord = double, true
			case '\\':
				if i+1 >= len(rs) {
					return nil, errors.New("ends with a lone backslash")
				}
				i++
				if rs[i] == '\n' {
					continue // line continuation
				}
				word.WriteRune(rs[i])
				inWord = true
			default:
				word.WriteRune(c)
				inWord = true
			}
		}
	}
	switch state {
	case single:
		return nil, errors.New("unterminated single quote")
	case double:
		return nil, errors.New("unterminated double quote")
	}
	if inWord {
		words = append(words, word.String())
	}
	return words, nil
}
