# mxgate — GNU Makefile.  `make run` and `make check` do all set-up on Debian 12.
#
#   make            build build/release/mxgate
#   make run        install missing packages, build, run on etc/mxgate.example.conf (loopback:2525)
#   make check      install missing packages, build, run every test plain and under ASan+UBSan
#   make asan       build and test only the ASan+UBSan variant
#   make tsan       build and run the threaded e2e suites under ThreadSanitizer
#   make fuzz       run each libFuzzer target for FUZZ_SECONDS (default 60)
#   make bench      run the benchmarks in bench/ (not part of check)
#   make format     reformat the sources with clang-format
#   make install    install to $(DESTDIR)$(PREFIX)

VERSION     := 0.1.0
PREFIX      ?= /usr/local
DESTDIR     ?=
CC          ?= cc
FUZZ_SECONDS ?= 60

PKGS        := openssl libevent libevent_pthreads libconfuse
PKG_CFLAGS  := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS    := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread

WARN := -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes \
	-Wmissing-prototypes -Wvla -Wformat=2 -Wundef -Wcast-qual -Wwrite-strings \
	-Wimplicit-fallthrough
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -DMXGATE_VERSION='"$(VERSION)"' \
	-DMXGATE_DATADIR='"$(PREFIX)/share/mxgate"' $(WARN) $(PKG_CFLAGS) -Isrc -g

release_CFLAGS := $(BASE_CFLAGS) -O2
asan_CFLAGS    := $(BASE_CFLAGS) -O1 -fno-omit-frame-pointer \
	-fsanitize=address,undefined -fno-sanitize-recover=all
tsan_CFLAGS    := $(BASE_CFLAGS) -O1 -fno-omit-frame-pointer -fsanitize=thread
release_LDFLAGS :=
asan_LDFLAGS    := -fsanitize=address,undefined
tsan_LDFLAGS    := -fsanitize=thread

SRCS      := $(sort $(wildcard src/*.c))
LIB_SRCS  := $(filter-out src/main.c,$(SRCS))
UNIT_SRCS := $(sort $(wildcard tests/unit/*.c))
BENCH_SRCS := $(sort $(wildcard bench/*.c))
FUZZ_SRCS := $(sort $(wildcard tests/fuzz/*.c))
HDRS      := $(wildcard src/*.h tests/unit/*.h bench/*.h)

.PHONY: all run check asan tsan fuzz bench format format-check install clean deps-build deps-check \
	unit-release unit-asan test-release test-asan

all: build/release/mxgate

# ---- per-variant build (release, asan) -------------------------------------------------
define variant
build/$(1)/obj/%.o: %.c Makefile
	@mkdir -p $$(dir $$@)
	@echo "  CC [$(1)] $$<"
	@$$(CC) $$($(1)_CFLAGS) -MMD -MP -c $$< -o $$@

build/$(1)/libmxgate.a: $(patsubst %.c,build/$(1)/obj/%.o,$(LIB_SRCS))
	@rm -f $$@
	@ar rcs $$@ $$^

build/$(1)/mxgate: build/$(1)/obj/src/main.o build/$(1)/libmxgate.a
	@echo "  LD [$(1)] $$@"
	@$$(CC) $$($(1)_LDFLAGS) -o $$@ $$^ $$(PKG_LIBS)

build/$(1)/unit-tests: $(patsubst %.c,build/$(1)/obj/%.o,$(UNIT_SRCS)) build/$(1)/libmxgate.a
	@echo "  LD [$(1)] $$@"
	@$$(CC) $$($(1)_LDFLAGS) -o $$@ $$^ $$(PKG_LIBS) -lcriterion

build/$(1)/bench/%: bench/%.c build/$(1)/libmxgate.a
	@mkdir -p $$(dir $$@)
	@echo "  LD [$(1)] $$@"
	@$$(CC) $$($(1)_CFLAGS) $$($(1)_LDFLAGS) -o $$@ $$^ $$(PKG_LIBS)

test-$(1): build/$(1)/mxgate build/$(1)/unit-tests
	tests/run $(1)
endef
$(eval $(call variant,release))
$(eval $(call variant,asan))
$(eval $(call variant,tsan))

# header dependencies, written by -MMD beside each object
-include $(shell find build -name '*.d' 2>/dev/null)

# ---- fuzzing (clang libFuzzer) ----------------------------------------------------------
FUZZ_CFLAGS := $(filter-out -O2,$(BASE_CFLAGS)) -O1 -fno-omit-frame-pointer \
	-fsanitize=fuzzer,address,undefined
build/fuzz/%: tests/fuzz/%.c $(LIB_SRCS) $(HDRS)
	@mkdir -p $(dir $@)
	@echo "  FUZZ $@"
	@clang $(FUZZ_CFLAGS) -o $@ $< $(LIB_SRCS) $(PKG_LIBS)

FUZZERS := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(FUZZ_SRCS))

# ---- the user-facing targets ------------------------------------------------------------
deps-build:
	@scripts/deps build
deps-check:
	@scripts/deps check

run: deps-build
	@$(MAKE) --no-print-directory all
	@scripts/run-example

check: deps-check
	@tests/preflight
	@$(MAKE) --no-print-directory format-check
	@$(MAKE) --no-print-directory build/release/mxgate build/release/unit-tests \
		build/asan/mxgate build/asan/unit-tests build/tsan/mxgate $(FUZZERS)
	@tests/run all

asan: deps-check
	@$(MAKE) --no-print-directory build/asan/mxgate build/asan/unit-tests
	@tests/run asan

tsan: deps-check
	@$(MAKE) --no-print-directory build/tsan/mxgate
	@tests/run tsan

fuzz: deps-check $(FUZZERS)
	@set -e; for f in $(FUZZERS); do \
		n=$$(basename $$f); mkdir -p build/fuzz/corpus-$$n; \
		echo "== fuzzing $$n for $(FUZZ_SECONDS)s"; \
		$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
			build/fuzz/corpus-$$n tests/fuzz/corpus/$$n; \
	done

bench: deps-check
	@scripts/deps bench
	@$(MAKE) --no-print-directory build/release/mxgate \
		$(patsubst bench/%.c,build/release/bench/%,$(BENCH_SRCS))
	@bench/run

format:
	clang-format -i $(SRCS) $(HDRS) $(UNIT_SRCS) $(BENCH_SRCS) $(FUZZ_SRCS)

format-check:
	@out=$$(for f in $(SRCS) $(HDRS) $(UNIT_SRCS) $(BENCH_SRCS) $(FUZZ_SRCS); do \
		clang-format --dry-run --Werror $$f 2>&1 >/dev/null | grep -m1 warning; done); \
	if [ -n "$$out" ]; then echo "$$out"; echo "format-check: run 'make format'"; exit 1; fi

install: build/release/mxgate
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/share/mxgate/providers \
		$(DESTDIR)$(PREFIX)/share/doc/mxgate
	install -m 0755 build/release/mxgate $(DESTDIR)$(PREFIX)/sbin/mxgate
	if [ -d providers ]; then install -m 0644 providers/*.conf \
		$(DESTDIR)$(PREFIX)/share/mxgate/providers/; fi
	install -m 0644 etc/*.conf README.md docs/*.md $(DESTDIR)$(PREFIX)/share/doc/mxgate/

clean:
	rm -rf build
