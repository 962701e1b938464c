#!/bin/sh
# check-man.sh - the option table (as usage() prints it) against
# naiberd.8, both ways: the SYNOPSIS must equal usage(), and every flag
# usage() knows must be documented in the options list and vice versa.
# usage: check-man.sh path/to/naiberd path/to/naiberd.8
set -eu
bin=$1
page=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$bin" -h | tr -s ' \n' ' ' | sed 's/ $//' > "$tmp/usage"
# SYNOPSIS .Op lines -> "usage: naiberd [..] [..]"
awk '
	/^\.Sh SYNOPSIS/ { on = 1; next }
	/^\.Sh / { on = 0 }
	on && /^\.Op / {
		sub(/^\.Op /, ""); gsub(/\\-/, "-");
		gsub(/Fl /, "-"); gsub(/Ar /, "");
		printf " [%s]", $0
	}
' "$page" | sed 's/^/usage: naiberd/' > "$tmp/synopsis"
fail=0
if ! cmp -s "$tmp/usage" "$tmp/synopsis"; then
	echo "check-man: SYNOPSIS differs from usage():"
	echo "  usage:    $(cat "$tmp/usage")"
	echo "  synopsis: $(cat "$tmp/synopsis")"
	fail=1
fi
# Flags in usage (single letters of the [-DfhtV] group too).
tr ' ' '\n' < "$tmp/usage" | sed -n 's/^\[\{0,1\}\(-[-a-zA-Z]*\)\]\{0,1\}$/\1/p' |
	while read -r f; do
		case $f in
		--*) echo "$f" ;;
		*) echo "$f" | cut -c2- | fold -w1 | sed 's/^/-/' ;;
		esac
	done | sort -u > "$tmp/flags.usage"
# Flags documented in the options list (.It Fl X / .It Fl \-long).
sed -n 's/^\.It Fl \([a-zA-Z]\).*/-\1/p; s/^\.It Fl \\-\([a-z-]*\).*/--\1/p' \
	"$page" | sort -u > "$tmp/flags.man"
missing=$(comm -23 "$tmp/flags.usage" "$tmp/flags.man")
extra=$(comm -13 "$tmp/flags.usage" "$tmp/flags.man")
if [ -n "$missing" ]; then
	echo "check-man: flags not documented in $page:" $missing
	fail=1
fi
if [ -n "$extra" ]; then
	echo "check-man: flags documented but unknown to naiberd:" $extra
	fail=1
fi
[ $fail -eq 0 ] && echo "check-man: $(wc -l < "$tmp/flags.usage") flags agree"
exit $fail
