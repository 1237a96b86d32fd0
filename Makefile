# Makefile: hand-written and non-recursive. `make` on a fresh clone runs
# autoreconf and ./configure (through the config.mk rule) before building.
# Objects go to build/ (or build-san/ with SAN=1); tools land in bin/.

.DEFAULT_GOAL := all
SHELL := /bin/bash
.DELETE_ON_ERROR:
.SUFFIXES:

# Goals that must work before configure has run.
NOCONFIG_GOALS := clean distclean deps
# Goals that may install missing Debian packages when run as root.
INSTALL_GOALS := demo check check-full bench
CH_INSTALL_DEPS ?= $(if $(filter $(INSTALL_GOALS),$(MAKECMDGOALS)),yes,no)
export CH_INSTALL_DEPS

ifneq ($(filter-out $(NOCONFIG_GOALS),$(or $(MAKECMDGOALS),all)),)
include config.mk
endif

config.mk: configure.ac config.mk.in
	test/setup/install-deps.sh build
	autoreconf -i
	if [ -x config.status ]; then ./config.status --recheck && ./config.status; \
	else ./configure $(CONFIGURE_FLAGS); fi

PREFIX ?= $(prefix)
DESTDIR ?=

# SAN=1 builds with AddressSanitizer and UndefinedBehaviorSanitizer into build-san/.
ifeq ($(SAN),1)
B := build-san
BINDIR := build-san/bin
OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDSAN := -fsanitize=address,undefined
HARDEN := -fstack-protector-strong -fPIE
else
B := build
BINDIR := bin
OPT := -O2 -g
LDSAN :=
HARDEN := -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIE
endif

WARN := -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wmissing-declarations \
        -Wformat=2 -Wimplicit-fallthrough -Wnull-dereference -Wundef $(WERROR)
CPPFLAGS := -I. -Ilib -Ibin -DCH_PREFIX='"$(PREFIX)"'
CXXFLAGS := -std=c++20 $(OPT) $(HARDEN) $(WARN) $(CXXFLAGS_CFG) \
            $(YAML_CFLAGS) $(ARCHIVE_CFLAGS) $(ZSTD_CFLAGS) $(CURL_CFLAGS) $(JSON_CFLAGS) \
            $(CRYPTO_CFLAGS) $(SQFS_CFLAGS) $(DEFLATE_CFLAGS) $(FUSE_CFLAGS)
# libstdc++ linked statically: it removes the largest share of dynamic-linking
# work from every start of ch-run (one per MPI rank).
LDFLAGS := $(LDSAN) -pie -Wl,-z,relro,-z,now -Wl,--as-needed $(if $(SAN),,-static-libstdc++ -static-libgcc) $(LDFLAGS_CFG)

# ---- libraries: one static archive per lib/ module ----------------------
MODULES := util storage image registry run fromhost
define module_rules
$(1)_SRCS := $$(sort $$(wildcard lib/$(1)/*.cc))
$(1)_OBJS := $$(patsubst %.cc,$(B)/%.o,$$($(1)_SRCS))
$(B)/lib/libch_$(1).a: $$($(1)_OBJS)
	@mkdir -p $$(@D)
	rm -f $$@ && ar rcs $$@ $$^
endef
$(foreach m,$(MODULES),$(eval $(call module_rules,$(m))))
lib_a = $(foreach m,$(1),$(B)/lib/libch_$(m).a)

$(B)/%.o: %.cc config.h
	@mkdir -p $(@D)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -MMD -MP -c -o $@ $<

# ---- tools ------------------------------------------------------------------
TOOLS := ch-run ch-checkns ch-convert ch-image ch-fromhost
CLI_OBJS := $(B)/bin/cli.o

# Each tool's archives (in link order) and system libraries. ch-run must not
# link libcurl or libarchive: test/checks/link-deps.sh enforces it. It links
# libsquashfs, libdeflate and libfuse3 statically where possible (see
# configure.ac).
# xz_crc64.o by name, before the archives: see the file for why.
ch-run_BINOBJS  := $(B)/bin/run_cli.o $(B)/lib/image/xz_crc64.o
ch-run_LIBS     := $(call lib_a,run image storage util)
ch-run_SYSLIBS  := $(YAML_LIBS) $(RUN_LIBS)
# A static PIE when configure found every archive; never under sanitizers,
# which need the dynamic loader. -pie and g++'s -static-libstdc++ (which ends
# in -Bdynamic) would each turn the link back into a dynamic one. The link's
# warning about dlopen in libfuse3 is expected: configure.ac says why.
ch-run_LDFLAGS  := $(if $(SAN),,$(RUN_LDFLAGS))
ch-run_LDFLAGS_OUT := $(if $(ch-run_LDFLAGS),-pie -static-libstdc++)
# The static link also leaves out the standard streams' set-up, which ch-run
# never uses (bin/no_stream_init.cc says why).
ifneq ($(ch-run_LDFLAGS),)
ch-run_BINOBJS  += $(B)/bin/no_stream_init.o
ch-run_LDFLAGS  += -Wl,--wrap=_ZNSt8ios_base4InitC1Ev -Wl,--wrap=_ZNSt8ios_base4InitD1Ev
endif
ch-checkns_LIBS := $(call lib_a,run image storage util)
ch-checkns_SYSLIBS := $(SQFS_LIBS) $(DEFLATE_LIBS) $(FUSE_LIBS) -lpthread
ch-convert_LIBS := $(call lib_a,image storage util)
ch-convert_SYSLIBS := $(SQFS_LIBS) $(DEFLATE_LIBS) $(ARCHIVE_LIBS) $(ZSTD_LIBS) $(FUSE_LIBS) -lpthread
ch-fromhost_LIBS := $(call lib_a,fromhost image storage util)
ch-fromhost_SYSLIBS := $(SQFS_LIBS) $(DEFLATE_LIBS) $(FUSE_LIBS) -lpthread

# ch-image: the registry client (libcurl, libcrypto) over the entry stream.
ch-image_BINOBJS := $(B)/bin/pull.o
ch-image_LIBS := $(call lib_a,registry image storage util)
ch-image_SYSLIBS := $(SQFS_LIBS) $(DEFLATE_LIBS) $(ARCHIVE_LIBS) $(ZSTD_LIBS) $(CURL_LIBS) $(CRYPTO_LIBS) \
                    $(YAML_LIBS) $(FUSE_LIBS) -lpthread

# config.mk holds the link flags, so a reconfigured build relinks.
define tool_rules
$(BINDIR)/$(1): $(B)/bin/$(1).o $(CLI_OBJS) $$($(1)_BINOBJS) $$($(1)_LIBS) config.mk
	@mkdir -p $$(@D)
	$$(CXX) $$(CXXFLAGS) $$(filter-out $$($(1)_LDFLAGS_OUT),$$(LDFLAGS)) $$($(1)_LDFLAGS) -o $$@ $$(filter-out config.mk,$$^) $$($(1)_SYSLIBS)
endef
$(foreach t,$(TOOLS),$(eval $(call tool_rules,$(t))))
TOOL_BINS := $(addprefix $(BINDIR)/,$(TOOLS))

# ---- the embedded default image (busybox-static, no network) ---------------
IMAGE := $(B)/img/busybox
$(IMAGE)/.built: examples/busybox/mkimage.sh
	examples/busybox/mkimage.sh $(BUSYBOX) $(IMAGE)
	touch $@

# ---- unit tests ------------------------------------------------------------
UNIT_SRCS := $(sort $(shell find test/unit -name '*.cc' 2>/dev/null))
UNIT_OBJS := $(patsubst %.cc,$(B)/%.o,$(UNIT_SRCS))
UNIT_BIN := $(B)/test/unit/unit-tests
# bin/'s option tables and their translation are tested too.
UNIT_BINOBJS := $(CLI_OBJS) $(B)/bin/run_cli.o
$(UNIT_BIN): $(UNIT_OBJS) $(UNIT_BINOBJS) $(call lib_a,fromhost run registry image storage util)
	@mkdir -p $(@D)
	$(CXX) $(CXXFLAGS) $(LDFLAGS) -o $@ $^ $(SQFS_LIBS) $(DEFLATE_LIBS) $(ARCHIVE_LIBS) $(ZSTD_LIBS) \
	  $(CURL_LIBS) $(CRYPTO_LIBS) $(YAML_LIBS) $(FUSE_LIBS) -lpthread

# ---- benchmark programs: test/bench/NAME.cc becomes $(B)/test/bench/NAME ----
BENCH_SRCS := $(sort $(wildcard test/bench/*.cc))
BENCH_BINS := $(patsubst test/bench/%.cc,$(B)/test/bench/%,$(BENCH_SRCS))
.PRECIOUS: $(B)/test/bench/%.o
$(B)/test/bench/%: $(B)/test/bench/%.o $(call lib_a,image storage util)
	$(CXX) $(CXXFLAGS) $(LDFLAGS) -o $@ $^ $(SQFS_LIBS) $(DEFLATE_LIBS) $(ARCHIVE_LIBS) $(ZSTD_LIBS) $(FUSE_LIBS) -lpthread

# ---- goals -----------------------------------------------------------------
.PHONY: all tools image unit bench-tools demo check check-full bench install lint clean distclean deps san
all: tools image unit bench-tools
tools: $(TOOL_BINS)
image: $(IMAGE)/.built
unit: $(UNIT_BIN)
bench-tools: $(BENCH_BINS)
san:
	$(MAKE) SAN=1 tools unit

deps:
	CH_INSTALL_DEPS=yes test/setup/install-deps.sh build

demo: all
	examples/demo.sh $(BINDIR) $(IMAGE)

check: all
	$(MAKE) SAN=1 tools unit
	test/check.sh standard

check-full: all
	$(MAKE) SAN=1 tools unit
	test/check.sh full

bench: all
	test/bench/run.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/chtools
	install -m 0755 $(TOOL_BINS) $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 $(wildcard man/*.1) $(DESTDIR)$(PREFIX)/share/man/man1/
	rm -rf $(DESTDIR)$(PREFIX)/share/chtools/busybox
	cp -a $(IMAGE) $(DESTDIR)$(PREFIX)/share/chtools/busybox
	rm -f $(DESTDIR)$(PREFIX)/share/chtools/busybox/.built
	rm -rf $(DESTDIR)$(PREFIX)/share/chtools/examples
	cp -R examples $(DESTDIR)$(PREFIX)/share/chtools/examples
	chmod -R a+rX $(DESTDIR)$(PREFIX)/share/chtools/examples

lint:
	test/checks/lint.sh

clean:
	rm -rf build build-san $(addprefix bin/,$(TOOLS))

distclean: clean
	rm -rf config.mk config.h config.h.in config.status config.log configure autom4te.cache aclocal.m4 config.h.in~

-include $(shell find build build-san -name '*.d' 2>/dev/null)

# ==== fuzzing: libFuzzer harnesses in test/fuzz/ ===============================
# Built with clang (Debian's clang-14 and libclang-rt-14-dev), ASan and UBSan,
# into build-fuzz/: its own copy of the lib/ objects the harnesses use, since
# libFuzzer needs clang's coverage instrumentation. `make fuzz` runs
# test/fuzz/squash_fuzz for FUZZ_SECONDS; test/check.sh runs it briefly.
FUZZ_CXX ?= clang++-14
FUZZ_SECONDS ?= 600
FUZZ_B := build-fuzz
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined
# Warnings shown, not fatal: clang may warn where g++ (the gate) does not.
FUZZ_CXXFLAGS := -std=c++20 -O1 -g -fno-omit-frame-pointer $(FUZZ_SAN) $(filter-out -Werror,$(WARN)) \
                 $(CXXFLAGS_CFG) $(YAML_CFLAGS) $(ARCHIVE_CFLAGS) $(ZSTD_CFLAGS) $(CURL_CFLAGS) \
                 $(JSON_CFLAGS) $(CRYPTO_CFLAGS) $(SQFS_CFLAGS) $(DEFLATE_CFLAGS) $(FUSE_CFLAGS) $(SQUASHFUSE_CFLAGS)
# Not the FUSE server: clang 14 can't compile libstdc++ 12's ranges it uses.
FUZZ_LIB_SRCS := $(filter-out lib/image/squash_serve.cc,$(image_SRCS)) $(storage_SRCS) $(util_SRCS)
FUZZ_LIB_OBJS := $(patsubst %.cc,$(FUZZ_B)/%.o,$(FUZZ_LIB_SRCS))
FUZZ_BINS := $(patsubst test/fuzz/%.cc,$(FUZZ_B)/test/fuzz/%,$(wildcard test/fuzz/*.cc))

$(FUZZ_B)/lib/%.o: lib/%.cc config.h
	@mkdir -p $(@D)
	$(FUZZ_CXX) $(CPPFLAGS) $(FUZZ_CXXFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c -o $@ $<
$(FUZZ_B)/libch_fuzz.a: $(FUZZ_LIB_OBJS)
	rm -f $@ && ar rcs $@ $^
$(FUZZ_B)/test/fuzz/%.o: test/fuzz/%.cc config.h
	@mkdir -p $(@D)
	$(FUZZ_CXX) $(CPPFLAGS) $(FUZZ_CXXFLAGS) -Werror -fsanitize=fuzzer-no-link -MMD -MP -c -o $@ $<
$(FUZZ_B)/test/fuzz/%: $(FUZZ_B)/test/fuzz/%.o $(FUZZ_B)/libch_fuzz.a config.mk
	$(FUZZ_CXX) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $< $(FUZZ_B)/libch_fuzz.a $(ch-convert_SYSLIBS)

.PRECIOUS: $(FUZZ_B)/test/fuzz/%.o
.PHONY: fuzz fuzz-tools
fuzz-tools: $(FUZZ_BINS)
fuzz: fuzz-tools tools
	test/fuzz/run.sh $(FUZZ_B)/test/fuzz/squash_fuzz $(FUZZ_SECONDS)
-include $(shell find build-fuzz -name '*.d' 2>/dev/null)
