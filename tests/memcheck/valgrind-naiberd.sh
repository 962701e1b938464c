#!/bin/sh
# valgrind-naiberd.sh - runs build/naiberd under valgrind memcheck; the
# supervisor and every forked worker write their own report into
# $VG_DIR/vg.<pid>.log (default build/memcheck).  Used by tests/memcheck/t_memcheck.test.mjs.
here=$(cd "$(dirname "$0")/../.." && pwd)
VG_DIR=${VG_DIR:-$here/build/memcheck}
mkdir -p "$VG_DIR"
exec valgrind -q --leak-check=full --show-leak-kinds=definite \
	--errors-for-leak-kinds=definite --child-silent-after-fork=no \
	--track-fds=no --num-callers=30 --log-file="$VG_DIR/vg.%p.log" \
	"${NAIBERD_REAL:-$here/build/naiberd}" "$@"
