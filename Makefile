# The two commands of the README: `make run` and `make test`.
# Everything else here is a building block they use.
.PHONY: run test deps build-release build-debug build-fuzz fuzz bench format format-check clean

JOBS ?= $(shell nproc)
CMAKE_GEN := $(shell command -v ninja >/dev/null 2>&1 && echo "-G Ninja")

run: deps build-release
	scripts/run-dev

test: deps build-debug build-fuzz
	scripts/run-tests

deps:
	scripts/install-deps

build-release:
	cmake -S . -B build/release $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=Release -DIMS_WERROR=ON >/dev/null
	cmake --build build/release -j $(JOBS)

build-debug:
	cmake -S . -B build/debug $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=Debug -DIMS_WERROR=ON -DIMS_SANITIZE=ON >/dev/null
	cmake --build build/debug -j $(JOBS)

# libFuzzer harnesses (clang); `make test` builds them and runs each briefly.
build-fuzz:
	cmake -S . -B build/fuzz $(CMAKE_GEN) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DIMS_WERROR=ON -DIMS_FUZZ=ON -DIMS_TESTS=OFF -DIMS_BENCH=OFF >/dev/null
	cmake --build build/fuzz -j $(JOBS) --target fuzzers

fuzz: deps build-fuzz
	FUZZ_SECONDS=$${FUZZ_SECONDS:-60} scripts/run-fuzz

bench: deps build-release
	build/release/bench/imsauth_bench
	scripts/devstack up >/dev/null
	set -a; . var/devstack.env; set +a; build/release/bench/pool_bench 16 10
	set -a; . var/devstack.env; set +a; POOL_BENCH_REDIS=$$REDIS_URL build/release/bench/pool_bench 16 10
	bench/waf_bench 10
	bench/epcscf_bench.sh 10

format:
	git ls-files '*.c' '*.h' | xargs clang-format -i

format-check:
	git ls-files '*.c' '*.h' | xargs clang-format --dry-run --Werror

clean:
	rm -rf build
