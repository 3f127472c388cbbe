# csd - front door.  Userspace builds with Meson; this Makefile only wires
# the common jobs together.  See README.md.
#
#   make            build (./build)
#   make demo       install deps, build, csd-infer compare on the embedded drive
#   make demo-attn  the attention demo on the embedded drive (csd-demo)
#   make bench-e2e  csd vs flexgen batch sweep -> out/e2e/sweep.{json,dat,png}
#   make bench-drives  modeled throughput with 1/2/4/8 drives -> out/drives/
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
# make demo: a 7B-class shape (GQA, 32 q / 8 kv heads) with 2 of its 32
# layers, 16 sequences of 16k context (2 GiB of KV), so it runs in about a
# minute on a 2-core machine
DEMO_MODEL ?= $(BUILD)/demo-7b-gqa-2l.gguf
DEMO_ARGS  ?= --batch 16 --prompt-len 16384 --synthetic-kv --gen 8
E2E_OUT    ?= out/e2e
# extra csd-bench e2e options; flexgen's KV reads are paced to a modeled
# PCIe 4.0 x4 SSD by default (--ssd-gbps 7), e.g. E2E_ARGS='--ssd-gbps 3.5'
E2E_ARGS   ?=
MESON      ?= meson
NINJA      ?= ninja

.PHONY: all build deps demo demo-attn bench-e2e bench-drives check lint fuzz soak clean \
	distclean format

all: build

build: $(BUILD)/build.ninja
	$(NINJA) -C $(BUILD)

$(BUILD)/build.ninja:
	$(MESON) setup $(BUILD) --buildtype=debugoptimized --werror

deps:
	scripts/deps.sh

# Two compares (each exits nonzero if the backends' greedy tokens differ):
# a short one with a real host prefill, then the long-context one.
demo: deps
	$(MAKE) build
	[ -f $(DEMO_MODEL) ] || $(BUILD)/tools/csd-infer make-model \
		--preset 7b-gqa --layers 2 --ctx 32768 -o $(DEMO_MODEL)
	@echo "== real prefill: host, flexgen, csd must agree token for token =="
	$(BUILD)/tools/csd-infer compare --model $(DEMO_MODEL) --batch 4 \
		--prompt-len 48 --mixed --gen 16
	@echo
	@echo "== long context: attention on the drive vs KV read back from a file =="
	$(BUILD)/tools/csd-infer compare --model $(DEMO_MODEL) $(DEMO_ARGS)

demo-attn: deps
	$(MAKE) build
	$(BUILD)/tools/csd-demo

bench-e2e: deps
	scripts/deps.sh --plot
	$(MAKE) build
	mkdir -p $(E2E_OUT)
	$(BUILD)/tools/csd-bench e2e --out $(E2E_OUT) $(E2E_ARGS)
	cd $(E2E_OUT) && gnuplot sweep.gp
	@echo "wrote $(E2E_OUT)/sweep.json $(E2E_OUT)/sweep.dat $(E2E_OUT)/sweep.png"

bench-drives: deps
	scripts/deps.sh --plot
	$(MAKE) build
	mkdir -p out/drives
	$(BUILD)/tools/csd-bench drives --json out/drives/drives.json \
		--png out/drives/drives.png $(DRIVES_ARGS)
	@echo "wrote out/drives/drives.json out/drives/drives.png"

check:
	scripts/deps.sh --fuzz --kmod
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

# csd.ko against the newest installed Debian headers (or KVER=<ver>);
# the version is discovered at run time, never hard-coded.
KVER ?= $(shell ls /usr/src 2>/dev/null | \
	sed -n 's/^linux-headers-\(.*-amd64\)$$/\1/p' | sort -V | \
	while read -r v; do [ -r /boot/vmlinuz-$$v ] && echo $$v; done | tail -n 1)
KDIR ?= /usr/src/linux-headers-$(KVER)

.PHONY: kmod kmod-install dkms-check qemu-test
kmod:
	scripts/deps.sh --kmod
	$(MAKE) -C $(KDIR) M=$(CURDIR) W=1 modules

# Install csd.ko for KVER (/lib/modules/<ver>/updates) and the udev rule.
# Or use DKMS: see dkms.conf and Documentation/driver.md.
kmod-install: kmod
	$(MAKE) -C $(KDIR) M=$(CURDIR) INSTALL_MOD_DIR=updates modules_install
	install -D -m 0644 kmod/60-csd.rules $(DESTDIR)/etc/udev/rules.d/60-csd.rules
	-udevadm control --reload-rules

# `dkms build` of this tree in a private DKMS tree (also part of make check).
dkms-check:
	scripts/dkms-check.sh

# Boot Debian's kernel under QEMU (TCG) with csd-fw and test csd.ko in it.
qemu-test: kmod
	$(MAKE) build
	CSD_FW=$(CURDIR)/$(BUILD)/firmware-sim/csd-fw KVER=$(KVER) tests/qemu/run.sh
