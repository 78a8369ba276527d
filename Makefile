# sealtrail build. Outputs go under $(BUILD) (default build/); `make V=1`
# shows full commands. Targets: all, test, fuzz, asan, bench, bench-seal, install, clean,
# vmlinux.

BUILD ?= build
PREFIX ?= /usr/local
CC ?= gcc
CLANG ?= clang
BPFTOOL ?= $(shell command -v bpftool || echo /usr/sbin/bpftool)
ARCH := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')

ifeq ($(V),1)
Q :=
msg :=
else
Q := @
msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

WARN := -Wall -Wextra -Werror
CFLAGS ?= -O2 -g
VERSION := 0.1.0
ALL_CFLAGS := -DSEALTRAIL_VERSION=\"$(VERSION)\" -std=gnu11 $(WARN) $(CFLAGS) -D_GNU_SOURCE -Iinclude -Iuserspace -I$(BUILD)
LIBS := -lbpf -lelf -lz -lzstd -lsqlite3 -lcrypto -lm -lpthread
BPF_CFLAGS := -g -O2 -Wall -Werror -target bpf -mcpu=v3 -D__TARGET_ARCH_$(ARCH) -Ivmlinux -Iinclude -Ibpf

COMMON_SRC := $(wildcard userspace/common/*.c) $(wildcard userspace/store/*.c) \
	$(wildcard userspace/access/*.c)
DAEMON_SRC := $(wildcard userspace/daemon/*.c) $(wildcard userspace/capture/*.c) \
	$(wildcard userspace/session/*.c)
CLI_SRC := $(wildcard userspace/cli/*.c)
UNIT_SRC := $(wildcard selftests/unit/*.c)
# sanitizer defaults, linked in the `make asan` build only
SAN_SRC ?=
# daemon and CLI code on untrusted bytes that the unit tests and fuzzers exercise too
PARSE_SRC := userspace/session/procfs.c userspace/cli/timeline.c

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

BINS := $(BUILD)/sealtraild $(BUILD)/sealtrail
UNIT_BIN := $(BUILD)/unit-tests
SKEL := $(BUILD)/sealtrail.skel.h

.PHONY: all test unit fuzz asan bench bench-seal install clean vmlinux
all: $(BINS)

$(BUILD)/sealtrail.bpf.o: bpf/sealtrail.bpf.c $(wildcard bpf/lib/*.h) include/sealtrail/events.h vmlinux/vmlinux.h
	$(call msg,BPF,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(SKEL): $(BUILD)/sealtrail.bpf.o
	$(call msg,SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name sealtrail_bpf > $@.tmp && mv $@.tmp $@

$(BUILD)/obj/%.o: %.c $(wildcard include/sealtrail/*.h) $(wildcard userspace/*/*.h) | $(SKEL)
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(ALL_CFLAGS) -c $< -o $@

# the skeleton embeds the BPF object: whatever includes it must be rebuilt
$(call obj,$(wildcard userspace/capture/*.c)): $(SKEL)

$(BUILD)/sealtraild: $(call obj,$(DAEMON_SRC) $(COMMON_SRC) $(SAN_SRC))
	$(call msg,LINK,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $^ -o $@ $(LIBS)

$(BUILD)/sealtrail: $(call obj,$(CLI_SRC) $(COMMON_SRC) $(SAN_SRC))
	$(call msg,LINK,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $^ -o $@ $(LIBS)

# the collector's session code, with the kernel maps faked in memory
SESSION_SRC := $(filter-out $(PARSE_SRC),$(wildcard userspace/session/*.c)) \
	selftests/lib/fake_capture.c
$(UNIT_BIN): $(call obj,$(UNIT_SRC) $(COMMON_SRC) $(PARSE_SRC) $(SESSION_SRC) $(SAN_SRC))
	$(call msg,LINK,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $^ -o $@ $(LIBS)

# The whole suite: unit tests, end-to-end tests against a real sshd, and a
# bounded fuzz run. Needs root (BPF, users, sshd). Ends with "N passed, N failed".
test: all $(UNIT_BIN) fuzz asan
	$(Q)/usr/bin/python3 selftests/run.py --build $(BUILD) --asan-build $(ASAN_BUILD)

# The same daemon, CLI and unit tests built with ASan, UBSan and LeakSanitizer
# in $(BUILD)-asan: `make test` runs the unit and end-to-end tests again
# against them, so a memory error or leak on any path a test drives fails it.
ASAN_BUILD := $(patsubst %/,%,$(BUILD))-asan
ASAN_CFLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
	-fno-sanitize-recover=undefined
asan:
	$(Q)$(MAKE) --no-print-directory BUILD=$(ASAN_BUILD) CFLAGS="$(ASAN_CFLAGS)" \
		SAN_SRC=selftests/lib/sanitizer_options.c all $(ASAN_BUILD)/unit-tests

unit: $(UNIT_BIN)
	$(Q)$(UNIT_BIN)

FUZZ_SRC := $(wildcard selftests/fuzz/*.c)
FUZZ_BINS := $(patsubst selftests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))
FUZZ_CFLAGS := -std=gnu11 -g -O1 -D_GNU_SOURCE -DSEALTRAIL_VERSION=\"$(VERSION)\" -Iinclude -Iuserspace \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
fuzz: $(FUZZ_BINS)
$(BUILD)/fuzz/fuzz_events: FUZZ_EXTRA := $(SESSION_SRC)
$(BUILD)/fuzz/fuzz_events: LDLIBS_EXTRA := -lpthread
$(BUILD)/fuzz/%: selftests/fuzz/%.c selftests/fuzz/fuzz.h $(COMMON_SRC) $(PARSE_SRC) \
		$(wildcard userspace/*/*.h) $(wildcard userspace/session/*.c) $(wildcard selftests/lib/*.[ch])
	$(call msg,FUZZ,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CLANG) $(FUZZ_CFLAGS) $< $(COMMON_SRC) $(PARSE_SRC) $(FUZZ_EXTRA) -o $@ -lz -lzstd \
		-lsqlite3 -lcrypto $(LDLIBS_EXTRA)

bench: all $(BUILD)/scan-bench
	$(Q)/usr/bin/python3 tools/bench/run.py --build $(BUILD)

# Sealing and verify throughput and the storage ratio (issue #3); no root needed.
SEAL_BENCH := $(BUILD)/seal-bench
$(SEAL_BENCH): $(call obj,tools/bench/seal_bench.c $(COMMON_SRC))
	$(call msg,LINK,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $^ -o $@ $(LIBS)

bench-seal: $(BUILD)/sealtrail $(SEAL_BENCH)
	$(Q)/usr/bin/python3 tools/bench/seal.py --build $(BUILD)

# The collector's /proc scan, as before and as now (ratio in one run).
$(BUILD)/scan-bench: $(call obj,tools/bench/scan_bench.c userspace/session/procfs.c $(COMMON_SRC))
	$(call msg,LINK,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $^ -o $@ $(LIBS)

install: $(BINS)
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BUILD)/sealtraild $(DESTDIR)$(PREFIX)/sbin/sealtraild
	install -m 0755 $(BUILD)/sealtrail $(DESTDIR)$(PREFIX)/bin/sealtrail

vmlinux:
	$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > vmlinux/vmlinux.h

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
