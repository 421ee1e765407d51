#!/usr/bin/env bash
# Packaging: `cmake --install` of the build tree, then the example program built by an
# outside consumer twice, through pkg-config and through find_package(imsauth), and run
# against a real JWKS and token. Also checks the SONAME and that only imsauth_* is exported.
# usage: test-install.sh BUILD_DIR SOURCE_DIR "EXTRA_CFLAGS"
set -euo pipefail
build=$1 src=$2 extra=${3:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(dirname "$(find "$prefix" -name 'libimsauth.so.1' | head -1)")
[ -f "$prefix/include/imsauth/imsauth.h" ] && [ -f "$prefix/include/imsauth/imsauth_redis.h" ]
[ -f "$libdir/libimsauth.a" ] && [ -f "$libdir/pkgconfig/imsauth.pc" ]
[ -x "$prefix/bin/imsauth-verify" ]

soname=$(readelf -d "$libdir/libimsauth.so.1" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
[ "$soname" = libimsauth.so.1 ] || { echo "SONAME is '$soname'"; exit 1; }
bad=$(nm -D --defined-only "$libdir/libimsauth.so.1" | awk '$3 != "" {print $3}' \
  | grep -v -e '^imsauth_' -e '^IMSAUTH_1$' || true)
[ -z "$bad" ] || { echo "exported outside the imsauth_ prefix: $bad"; exit 1; }
nexp=$(nm -D --defined-only "$libdir/libimsauth.so.1" | grep -c ' T imsauth_')
# The static library too: every global defined symbol is imsauth_* (sanitizer and compiler
# runtime helpers aside).
bad=$(nm --defined-only "$libdir/libimsauth.a" | awk '$2 ~ /^[A-Z]$/ {print $3}' \
  | grep -v -e '^imsauth_' -e '^__' -e '^_GLOBAL_' -e '^asan\.' || true)
[ -z "$bad" ] || { echo "libimsauth.a has global symbols outside imsauth_: $bad"; exit 1; }

# A JWKS and a token valid now, from the demo tool of the build tree.
"$build/validator-lib/imsauth-demo" "$tmp" >"$tmp/demo.out"
jwks=$tmp/jwks.json

run_example() { # binary
  LD_LIBRARY_PATH=$libdir "$1" "$jwks" https://waf.home1.net epcscf.home1.net home1.net \
    sip:alice@home1.net "Bearer not.a.token" >"$tmp/out" || [ $? -eq 1 ]
  grep -q '^answer 401 (bad_signature\|malformed_token)' "$tmp/out" || { cat "$tmp/out"; exit 1; }
  LD_LIBRARY_PATH=$libdir "$1" "$jwks" https://waf.home1.net epcscf.home1.net home1.net \
    sip:alice@home1.net "" >"$tmp/out" || [ $? -eq 1 ]
  grep -q 'WWW-Authenticate: Bearer realm="home1.net"' "$tmp/out" || { cat "$tmp/out"; exit 1; }
}

# 1. pkg-config
export PKG_CONFIG_PATH=$libdir/pkgconfig
# shellcheck disable=SC2046,SC2086
cc -std=c17 $extra "$src/validator-lib/examples/verify_header.c" -o "$tmp/ex-pc" \
  $(pkg-config --cflags --libs imsauth)
run_example "$tmp/ex-pc"

# 2. CMake package, shared and static targets
cmake -S "$src/tests/packaging/consumer" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$prefix" \
  -DEXAMPLE_SOURCE="$src/validator-lib/examples/verify_header.c" \
  -DCMAKE_C_FLAGS="$extra" -DCMAKE_EXE_LINKER_FLAGS="$extra" >/dev/null
cmake --build "$tmp/consumer" >/dev/null
run_example "$tmp/consumer/consumer"
run_example "$tmp/consumer/consumer_static"
ldd "$tmp/consumer/consumer_static" | grep -q libimsauth && { echo "static target links the .so"; exit 1; }

# 3. the static library (its own dependencies stay shared: Requires.private of the .pc)
# shellcheck disable=SC2046,SC2086
cc -std=c17 $extra "$src/validator-lib/examples/verify_header.c" -o "$tmp/ex-static" \
  -I"$prefix/include" "$libdir/libimsauth.a" \
  $(pkg-config --libs libcrypto jansson libcurl hiredis) -lpthread -lm
run_example "$tmp/ex-static"
ldd "$tmp/ex-static" | grep -q libimsauth && { echo "static example links libimsauth.so"; exit 1; }

echo "packaging: installed, SONAME $soname, $nexp exported functions all imsauth_*, example built via pkg-config, CMake package and static library"
