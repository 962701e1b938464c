#!/bin/sh
# check-first-run.sh - `make demo` as the first command on a machine
# that does not have the build's packages yet.
#
# A copy of the checkout's tracked files is built from nothing with shims
# first on PATH: pkg-config knows no package and dpkg-query reports every
# package missing until the shim apt-get has "installed" them (it only
# leaves a mark; the real packages are already on this machine).  This is
# the case the README promises, and the one where make once read empty
# library flags at parse time and failed with "libpq-fe.h: No such file".
# Also checked: a plain `make` before `make deps` stops with a message that
# says what to do.  Node's packages are borrowed from the checkout
# (hard-linked).
#
# usage: tests/check-first-run.sh   (from the top of the checkout)
set -eu
top=$(pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/naiberd-first-run.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
shim=$tmp/shim
src=$tmp/src
mkdir -p "$shim" "$src"

real_pc=$(command -v pkg-config) || { echo "check-first-run: no pkg-config" >&2; exit 1; }
real_dq=$(command -v dpkg-query) || { echo "check-first-run: no dpkg-query" >&2; exit 1; }
cat > "$shim/pkg-config" <<SH
#!/bin/sh
[ -e "$shim/installed" ] && exec "$real_pc" "\$@"
echo "pkg-config (first-run shim): no package is installed yet" >&2
exit 1
SH
cat > "$shim/dpkg-query" <<SH
#!/bin/sh
[ -e "$shim/installed" ] && exec "$real_dq" "\$@"
exit 1
SH
cat > "$shim/apt-get" <<SH
#!/bin/sh
echo "apt-get (first-run shim) \$*" >> "$shim/apt.log"
case "\$*" in *install*) touch "$shim/installed" ;; esac
exit 0
SH
cat > "$shim/sudo" <<SH
#!/bin/sh
exec "\$@"
SH
chmod 755 "$shim"/*

git ls-files -z | (cd "$top" && xargs -0 cp -p --parents -t "$src")
# Hard links: npm ci in the copy, if it runs, unlinks and writes its own
# files and never touches the checkout's.
for d in tests/peers tests/peers/bullmq5 tests/peers/bullmq6; do
	if [ -d "$top/$d/node_modules" ]; then
		cp -al "$top/$d/node_modules" "$src/$d/node_modules"
	fi
done

fail() { echo "check-first-run: FAIL: $*" >&2; exit 1; }

echo "== a plain make before make deps"
if PATH="$shim:$PATH" make -C "$src" > "$tmp/make.log" 2>&1; then
	cat "$tmp/make.log"; fail "make succeeded with no packages"
fi
grep -q "run 'make deps' first" "$tmp/make.log" ||
	{ cat "$tmp/make.log"; fail "make did not say to run make deps"; }
[ ! -e "$src/build/naiberd" ] || fail "a naiberd was built without flags"
echo "ok: stops with: $(grep "make deps" "$tmp/make.log" | head -1)"

echo "== make demo as the first command"
if ! PATH="$shim:$PATH" make -C "$src" demo > "$tmp/demo.log" 2>&1; then
	tail -40 "$tmp/demo.log"; fail "make demo failed on a first run"
fi
grep -q "install" "$shim/apt.log" || fail "make demo did not install packages"
grep -q "demo run time" "$tmp/demo.log" ||
	{ tail -40 "$tmp/demo.log"; fail "the demo did not finish"; }
echo "ok: $(grep -c . "$shim/apt.log") apt-get runs, then: $(grep "demo run time" "$tmp/demo.log" | sed 's/^ *//')"
echo "check-first-run: 2 passed, 0 failed"
