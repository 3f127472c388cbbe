# csd - front door.  Userspace builds with Meson; this Makefile only wires
# the common jobs together.  See README.md.
#
#   make            build (./build)
#   make demo       install deps, build, run the end-to-end demo
#   make check      install deps, build (-Werror), run all tests + ASan/UBSan
#   make lint       clang-tidy, cppcheck, clang-format check
#   make fuzz       libFuzzer targets (clang), FUZZ_TIME seconds each
#   make soak       long random-command storm
#   make clean

BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_TIME  ?= 300
SOAK_COMMANDS ?= 5000000
MESON      ?= meson
NINJA      ?= ninja

.PHONY: all build deps demo check lint fuzz soak clean distclean format

all: build

build: $(BUILD)/build.ninja
	$(NINJA) -C $(BUILD)

$(BUILD)/build.ninja:
	$(MESON) setup $(BUILD) --buildtype=debugoptimized --werror

deps:
	scripts/deps.sh

demo: deps
	$(MAKE) build
	$(BUILD)/tools/csd-demo

check:
	scripts/deps.sh --fuzz
	scripts/check.sh

lint: deps
	scripts/lint.sh

fuzz: deps
	scripts/deps.sh --fuzz
	[ -f $(FUZZ_BUILD)/build.ninja ] || CC=clang $(MESON) setup $(FUZZ_BUILD) \
		--buildtype=debugoptimized -Dfuzz=true -Dtests=disabled \
		-Db_sanitize=address,undefined -Db_lundef=false \
		-Dc_args=-fsanitize=fuzzer-no-link
	$(NINJA) -C $(FUZZ_BUILD) tests/fuzz/fuzz_cmd tests/fuzz/fuzz_gguf
	scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_TIME)

soak: build
	CSD_STORM_COMMANDS=$(SOAK_COMMANDS) $(BUILD)/tests/firmware-sim/test_storm

format:
	clang-format -i $$(git ls-files '*.c' '*.h' | grep -v '^kmod/')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)

distclean: clean
