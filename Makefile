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
#   make install    install to $(DESTDIR)$(PREFIX) (docs/OPERATIONS.md); make uninstall

VERSION     := 0.1.0
PREFIX      ?= /usr/local
DESTDIR     ?=
# Where `make install` puts things.  The presets' directory is compiled into the
# installed binary (MXGATE_PROVIDERS_DIR overrides it at run time).  systemd looks for
# units, sysusers.d and tmpfiles.d under /usr/local/lib and /usr/lib: with another PREFIX,
# set UNITDIR=/etc/systemd/system SYSUSERSDIR=/etc/sysusers.d TMPFILESDIR=/etc/tmpfiles.d.
SBINDIR     ?= $(PREFIX)/sbin
PKGDATADIR  ?= $(PREFIX)/share/mxgate
MANDIR      ?= $(PREFIX)/share/man
DOCDIR      ?= $(PREFIX)/share/doc/mxgate
UNITDIR     ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
CC          ?= cc
FUZZ_SECONDS ?= 60

PKGS        := openssl libevent libevent_pthreads libcares
PKG_CFLAGS  := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS    := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread

WARN := -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes \
	-Wmissing-prototypes -Wvla -Wformat=2 -Wundef -Wcast-qual -Wwrite-strings \
	-Wimplicit-fallthrough
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -DMXGATE_VERSION='"$(VERSION)"' \
	-DMXGATE_DATADIR='"$(PKGDATADIR)"' $(WARN) $(PKG_CFLAGS) -Isrc -g

release_CFLAGS := $(BASE_CFLAGS) -O2
asan_CFLAGS    := $(BASE_CFLAGS) -O1 -fno-omit-frame-pointer \
	-fsanitize=address,undefined -fno-sanitize-recover=all
tsan_CFLAGS    := $(BASE_CFLAGS) -O1 -fno-omit-frame-pointer -fsanitize=thread
release_LDFLAGS :=
asan_LDFLAGS    := -fsanitize=address,undefined
tsan_LDFLAGS    := -fsanitize=thread
# the unit tests fail the library's allocations on purpose (tests/unit/allocfail.h)
UNIT_WRAP       := -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup \
                   -Wl,--wrap=pthread_create

SRCS      := $(sort $(wildcard src/*/*.c))
LIB_SRCS  := $(filter-out src/cli/%,$(SRCS))
CLI_SRCS  := $(filter src/cli/%,$(SRCS))
UNIT_SRCS := $(sort $(wildcard tests/unit/*.c))
BENCH_SRCS := $(sort $(wildcard bench/*.c))
FUZZ_SRCS := $(sort $(wildcard tests/fuzz/*.c))
FAULT_SRCS := $(sort $(wildcard tests/fault/*.c))
HDRS      := $(wildcard src/*/*.h tests/unit/*.h bench/*.h)

.PHONY: all run check asan tsan fuzz bench format format-check install uninstall clean \
	deps-build deps-check unit-release unit-asan test-release test-asan FORCE

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

build/$(1)/mxgate: $(patsubst %.c,build/$(1)/obj/%.o,$(CLI_SRCS)) build/$(1)/libmxgate.a
	@echo "  LD [$(1)] $$@"
	@$$(CC) $$($(1)_LDFLAGS) -o $$@ $$^ $$(PKG_LIBS)

build/$(1)/unit-tests: $(patsubst %.c,build/$(1)/obj/%.o,$(UNIT_SRCS)) build/$(1)/libmxgate.a
	@echo "  LD [$(1)] $$@"
	@$$(CC) $$($(1)_LDFLAGS) $$(UNIT_WRAP) -o $$@ $$^ $$(PKG_LIBS) -lcriterion

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
# the library once, instrumented for the fuzzers (not linked with libFuzzer's main), and
# each target linked against it: ten targets no longer compile every source ten times
comma := ,
FUZZ_LIB_CFLAGS := $(subst -fsanitize=fuzzer$(comma),-fsanitize=fuzzer-no-link$(comma),$(FUZZ_CFLAGS))
build/fuzz/obj/%.o: %.c Makefile
	@mkdir -p $(dir $@)
	@echo "  CC [fuzz] $<"
	@clang $(FUZZ_LIB_CFLAGS) -MMD -MP -c -o $@ $<
build/fuzz/libmxgate.a: $(patsubst %.c,build/fuzz/obj/%.o,$(LIB_SRCS))
	@rm -f $@
	@ar rcs $@ $^
build/fuzz/%: tests/fuzz/%.c build/fuzz/libmxgate.a $(HDRS)
	@mkdir -p $(dir $@)
	@echo "  FUZZ $@"
	@clang $(FUZZ_CFLAGS) -o $@ $< build/fuzz/libmxgate.a $(PKG_LIBS)

FUZZERS := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(FUZZ_SRCS))

# ---- the user-facing targets ------------------------------------------------------------
# the builds they start use every core (a fresh clone builds four variants and the fuzzers)
NPROC := $(shell nproc 2>/dev/null || echo 2)
deps-build:
	@scripts/deps build
deps-check:
	@scripts/deps check

run: deps-build
	@$(MAKE) -j$(NPROC) --no-print-directory all
	@scripts/run-example

check: deps-check
	@tests/preflight
	@$(MAKE) --no-print-directory format-check
	@scripts/check-layers
	@scripts/check-funcs
	@$(MAKE) -j$(NPROC) --no-print-directory build/release/mxgate build/release/unit-tests \
		build/asan/mxgate build/asan/unit-tests build/tsan/mxgate $(FUZZERS)
	@tests/run all

asan: deps-check
	@$(MAKE) -j$(NPROC) --no-print-directory build/asan/mxgate build/asan/unit-tests
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
	clang-format -i $(SRCS) $(HDRS) $(UNIT_SRCS) $(BENCH_SRCS) $(FUZZ_SRCS) $(FAULT_SRCS)

format-check:
	@out=$$(for f in $(SRCS) $(HDRS) $(UNIT_SRCS) $(BENCH_SRCS) $(FUZZ_SRCS) $(FAULT_SRCS); do \
		clang-format --dry-run --Werror $$f 2>&1 >/dev/null | grep -m1 warning; done); \
	if [ -n "$$out" ]; then echo "$$out"; echo "format-check: run 'make format'"; exit 1; fi

# ---- install ---------------------------------------------------------------------------
# The installed binary is linked from the release objects and a providers.o of its own:
# providers.c has the presets' directory compiled in, and build/release/mxgate carries
# the PREFIX that `make` ran with, not the one `make install` is given.
# build/install/pkgdatadir holds the directory build/install/obj/src/conf/providers.o was made for and
# is rewritten only when it changes, so each new PREFIX recompiles that one file.
INSTALL_OBJS := $(patsubst %.c,build/release/obj/%.o,$(filter-out src/conf/providers.c,$(SRCS))) \
	build/install/obj/src/conf/providers.o

build/install/pkgdatadir: FORCE
	@mkdir -p $(@D)
	@echo '$(PKGDATADIR)' | cmp -s - $@ || echo '$(PKGDATADIR)' > $@

build/install/obj/src/conf/providers.o: src/conf/providers.c build/install/pkgdatadir Makefile
	@mkdir -p $(@D)
	@echo "  CC [install] $< (presets in $(PKGDATADIR)/providers)"
	@$(CC) $(release_CFLAGS) -MMD -MP -c $< -o $@

build/install/mxgate: $(INSTALL_OBJS)
	@echo "  LD [install] $@"
	@$(CC) $(release_LDFLAGS) -o $@ $^ $(PKG_LIBS)

build/install/mxgate.service: etc/systemd/mxgate.service.in FORCE
	@mkdir -p $(@D)
	@sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@DOCUMENTATION@|$(UNIT_DOCS)|g' $< > $@

# Manual pages.  mxgate.conf(5) is generated from the option table that drives
# `mxgate reference` (as docs/CONFIG.md is), and kept in the tree so that it can be read
# unbuilt; tests/e2e/test_cli_config.py checks that it is current.  install, uninstall and
# the mandoc lint in tests/e2e/test_install.py take every page listed here.
MAN8 := man/mxgate.8
MAN5 := man/mxgate.conf.5

man/mxgate.conf.5: build/release/mxgate
	@echo "  GEN $@"
	@build/release/mxgate reference --man > $@.tmp && mv $@.tmp $@
# the unit's Documentation=: man:mxgate(8) and every page added above
UNIT_DOCS := $(foreach p,$(MAN8) $(MAN5),man:$(basename $(notdir $(p)))($(subst .,,$(suffix $(p)))))

# Without systemd-sysusers (no systemd), `make install` creates the user and the
# directories that the sysusers.d/tmpfiles.d pair declares; with it, it runs the pair.
# Never with DESTDIR: that tree is someone else's to set up (a package's postinst).
SYSTEMD_SYSUSERS ?= $(shell command -v systemd-sysusers 2>/dev/null)
SYSTEMD_TMPFILES ?= $(shell command -v systemd-tmpfiles 2>/dev/null)

install: build/install/mxgate build/install/mxgate.service $(MAN5)
	install -d -m 0755 $(DESTDIR)$(SBINDIR) $(DESTDIR)$(PKGDATADIR)/providers \
		$(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR)
	install -m 0755 build/install/mxgate $(DESTDIR)$(SBINDIR)/mxgate
	install -m 0644 providers/*.conf $(DESTDIR)$(PKGDATADIR)/providers/
	install -m 0644 $(MAN8) $(DESTDIR)$(MANDIR)/man8/
	$(if $(MAN5),install -d -m 0755 $(DESTDIR)$(MANDIR)/man5 && \
		install -m 0644 $(MAN5) $(DESTDIR)$(MANDIR)/man5/)
	install -m 0644 build/install/mxgate.service $(DESTDIR)$(UNITDIR)/mxgate.service
	install -m 0644 etc/systemd/mxgate.sysusers $(DESTDIR)$(SYSUSERSDIR)/mxgate.conf
	install -m 0644 etc/systemd/mxgate.tmpfiles $(DESTDIR)$(TMPFILESDIR)/mxgate.conf
	install -m 0644 etc/*.conf $(DESTDIR)$(DOCDIR)/examples/
	install -m 0644 README.md docs/*.md $(DESTDIR)$(DOCDIR)/
ifeq ($(DESTDIR),)
ifneq ($(SYSTEMD_SYSUSERS),)
	$(SYSTEMD_SYSUSERS) $(SYSUSERSDIR)/mxgate.conf
	$(SYSTEMD_TMPFILES) --create $(TMPFILESDIR)/mxgate.conf
else
	if ! getent passwd mxgate >/dev/null; then \
		if command -v adduser >/dev/null; then adduser --system --group --no-create-home \
			--home /var/spool/mxgate --gecos "mxgate SMTP receive gateway" mxgate; \
		else useradd --system --user-group --no-create-home --home-dir /var/spool/mxgate \
			--shell /usr/sbin/nologin --comment "mxgate SMTP receive gateway" mxgate; fi; \
	fi
	install -d -m 0700 -o mxgate -g mxgate /var/spool/mxgate /var/mail/mxgate
endif
	@echo "mxgate installed.  Next: a configuration in /etc/mxgate/mxgate.conf (examples in"
	@echo "$(DOCDIR)/examples), then: systemctl daemon-reload; systemctl enable --now mxgate"
endif

# Removes what `make install` put in place; the user, the spool and the Maildirs (mail!)
# and /etc/mxgate stay, and the last lines say how to remove them.
uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/mxgate $(DESTDIR)$(UNITDIR)/mxgate.service \
		$(DESTDIR)$(SYSUSERSDIR)/mxgate.conf $(DESTDIR)$(TMPFILESDIR)/mxgate.conf \
		$(addprefix $(DESTDIR)$(MANDIR)/man8/,$(notdir $(MAN8))) \
		$(addprefix $(DESTDIR)$(MANDIR)/man5/,$(notdir $(MAN5))) \
		$(addprefix $(DESTDIR)$(PKGDATADIR)/providers/,$(notdir $(wildcard providers/*.conf)))
	rm -rf $(DESTDIR)$(DOCDIR)
	rmdir $(DESTDIR)$(PKGDATADIR)/providers $(DESTDIR)$(PKGDATADIR) 2>/dev/null || true
	@echo "mxgate uninstalled.  Left in place: /etc/mxgate, the spool /var/spool/mxgate and"
	@echo "the Maildirs (/var/mail/mxgate), and the user mxgate (deluser --system mxgate)."

clean:
	rm -rf build
