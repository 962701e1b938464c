#!/bin/sh
# check-man.sh - the option table against the man pages, both ways.
#
# naiberd.8: the SYNOPSIS must equal usage() (naiberd -h), and every flag
# usage() knows must be documented in the options list and vice versa.
#
# naiberd.conf.5 (if given): every key of the option table (naiberd
# --dump-options: key TAB env TAB type TAB default TAB flags, flags a
# comma list of secret, noreload, required, "-" for none) must have an
# entry in SETTINGS, and every entry must be a key of the table.  Each
# entry (".It Ic key arg") carries a compact tag list whose rows must
# agree with the table:
#   .It Type         first word: string, integer, boolean, URL, choice
#   .It Default      ".Ql value" or "none"
#   .It Environment  ".Ev NAME"
#   .It Required     first word "yes" only for required keys
#   .It Secret       present (first word "yes") only for secret keys
#   .It Reload       first word "no" for noreload keys, "yes" otherwise
#
# usage: check-man.sh path/to/naiberd path/to/naiberd.8 [path/to/naiberd.conf.5]
# NAIBERD_OPTIONS=file reads the table from file instead of the binary
# (to test this script).
set -eu
LC_ALL=C
export LC_ALL
bin=$1
page=$2
conf=${3:-}
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

[ -n "$conf" ] || exit $fail

# --- naiberd.conf.5 against the option table -------------------------

if [ -n "${NAIBERD_OPTIONS:-}" ]; then
	cat "$NAIBERD_OPTIONS" > "$tmp/dump"
elif ! "$bin" --dump-options > "$tmp/dump" 2> "$tmp/dump.err"; then
	echo "check-man: $bin --dump-options failed:" "$(cat "$tmp/dump.err")"
	exit 1
fi
if [ ! -s "$tmp/dump" ]; then
	echo "check-man: the option table is empty"
	exit 1
fi

# Both sides as "key TAB env TAB type TAB default TAB flags", flags in a
# fixed order (secret,noreload,required) or "-".
awk -F '\t' '
	NF != 5 {
		printf "check-man: option table line %d: %d fields, want 5\n",
		    NR, NF > "/dev/stderr"
		bad = 1
		next
	}
	{
		n = split($5, f, ",")
		s = nr = rq = 0
		for (i = 1; i <= n; i++) {
			if (f[i] == "secret") s = 1
			else if (f[i] == "noreload") nr = 1
			else if (f[i] == "required") rq = 1
			else if (f[i] != "-" && f[i] != "") {
				printf "check-man: option table: %s: unknown " \
				    "flag \"%s\"\n", $1, f[i] > "/dev/stderr"
				bad = 1
			}
		}
		fl = (s ? "secret," : "") (nr ? "noreload," : "") \
		    (rq ? "required," : "")
		sub(/,$/, "", fl)
		printf "%s\t%s\t%s\t%s\t%s\n", $1, $2, $3, $4, fl == "" ? "-" : fl
	}
	END { exit bad }
' "$tmp/dump" > "$tmp/table.u" || fail=1
sort "$tmp/table.u" > "$tmp/table"

awk -v page="$conf" '
	function word(s) {
		sub(/^[ \t]+/, "", s)
		sub(/[ \t].*/, "", s)
		gsub(/[:;,.]+$/, "", s)
		return tolower(s)
	}
	function unesc(s) {
		gsub(/\\-/, "-", s)
		gsub(/\\&/, "", s)
		gsub(/\\e/, "\\", s)
		return s
	}
	function flush(   fl) {
		if (key == "")
			return
		if (!(key in seen)) {
			seen[key] = 1
		} else {
			printf "check-man: %s: key %s documented twice\n", page,
			    key > "/dev/stderr"
			bad = 1
		}
		if (typ == "") {
			printf "check-man: %s: %s: no Type row\n", page, key \
			    > "/dev/stderr"
			bad = 1
		}
		if (!hasdef) {
			printf "check-man: %s: %s: no Default row\n", page, key \
			    > "/dev/stderr"
			bad = 1
		}
		if (reload == "") {
			printf "check-man: %s: %s: no Reload row\n", page, key \
			    > "/dev/stderr"
			bad = 1
		} else if (reload != "yes" && reload != "no") {
			printf "check-man: %s: %s: Reload row must start with " \
			    "yes or no, not \"%s\"\n", page, key, reload \
			    > "/dev/stderr"
			bad = 1
		}
		if (secret != "" && secret != "yes") {
			printf "check-man: %s: %s: Secret row must start with " \
			    "yes\n", page, key > "/dev/stderr"
			bad = 1
		}
		fl = (secret == "yes" ? "secret," : "") \
		    (reload == "no" ? "noreload," : "") \
		    (required == "yes" ? "required," : "")
		sub(/,$/, "", fl)
		printf "%s\t%s\t%s\t%s\t%s\n", key, env == "" ? "-" : env,
		    typ, def, fl == "" ? "-" : fl
		key = ""
	}
	/^\.Sh / {
		flush()
		on = ($0 ~ /^\.Sh SETTINGS[ \t]*$/)
		next
	}
	!on { next }
	/^\.Ss / { flush(); row = ""; next }
	/^\.It Ic / {
		flush()
		key = $3
		typ = env = def = secret = required = reload = ""
		hasdef = 0
		row = ""
		next
	}
	key == "" { next }
	/^\.It (Type|Default|Environment|Flag|Required|Secret|Reload)[ \t]*$/ {
		row = $2
		first = 1
		next
	}
	/^\.(It|El)/ { row = ""; next }
	row != "" && first {
		first = 0
		if (row == "Type") {
			typ = word($0)
		} else if (row == "Default") {
			hasdef = 1
			if ($0 ~ /^\.Ql /) {
				def = $0
				sub(/^\.Ql[ \t]+/, "", def)
				sub(/[ \t]+$/, "", def)
				def = unesc(def)
			} else if (word($0) == "none") {
				def = "-"
			} else {
				printf "check-man: %s: %s: Default row must be " \
				    "\".Ql value\" or \"none\"\n", page, key \
				    > "/dev/stderr"
				bad = 1
			}
		} else if (row == "Environment") {
			if ($1 == ".Ev")
				env = $2
			else {
				printf "check-man: %s: %s: Environment row must " \
				    "be \".Ev NAME\"\n", page, key > "/dev/stderr"
				bad = 1
			}
		} else if (row == "Required") {
			required = word($0)
		} else if (row == "Secret") {
			secret = word($0)
		} else if (row == "Reload") {
			reload = word($0)
		}
	}
	END {
		flush()
		exit bad
	}
' "$conf" > "$tmp/page.u" || fail=1
sort "$tmp/page.u" > "$tmp/page"

cut -f1 "$tmp/table" > "$tmp/keys.table"
cut -f1 "$tmp/page" > "$tmp/keys.page"
undoc=$(comm -23 "$tmp/keys.table" "$tmp/keys.page")
unknown=$(comm -13 "$tmp/keys.table" "$tmp/keys.page")
if [ -n "$undoc" ]; then
	echo "check-man: keys not documented in $conf:" $undoc
	fail=1
fi
if [ -n "$unknown" ]; then
	echo "check-man: keys documented in $conf but not in the option" \
	    "table:" $unknown
	fail=1
fi
# Field by field for the keys both know.
join -t "$(printf '\t')" "$tmp/table" "$tmp/page" | awk -F '\t' -v page="$conf" '
	BEGIN { split("environment type default flags", name, " ") }
	{
		for (i = 2; i <= 5; i++)
			if ($i != $(i + 4)) {
				printf "check-man: %s: %s: %s is \"%s\", the " \
				    "option table says \"%s\"\n", page, $1,
				    name[i - 1], $(i + 4), $i
				bad = 1
			}
	}
	END { exit bad }
' || fail=1
if [ $fail -eq 0 ]; then
	echo "check-man: $(wc -l < "$tmp/keys.table") keys agree with $conf"
fi
exit $fail
