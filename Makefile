# nbdd — user-defined storage backends as local /dev/nbdX block devices.
#
#   make            build the library, the daemon, nbdctl, examples
#   make check      install what is missing, build, run every test
#   make demo       daemon up, memory backend attached, mkfs + mount, detach
#   make install    PREFIX=/usr/local DESTDIR=...
#
# Objects go to $(B) (default build/); CC=clang and SANITIZE=address,undefined
# are honoured, and a sanitizer build uses its own directory.

PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
SBINDIR    ?= $(PREFIX)/sbin
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR     ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
PLUGINDIR  ?= $(LIBDIR)/nbdd
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
# Where systemd and udev look, as their pkg-config files say.
SYSTEMDUNITDIR ?= $(shell pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null || echo /lib/systemd/system)
UDEVRULESDIR ?= $(shell pkg-config --variable=udevdir udev 2>/dev/null || echo /lib/udev)/rules.d

VERSION := 0.1.0
SOMAJOR := 0

CC ?= cc
SANITIZE ?=
ifeq ($(SANITIZE),)
B ?= build
else
B ?= build-$(subst $(comma),-,$(SANITIZE))
endif
comma := ,

PKGS := libnl-genl-3.0 libkmod json-c libsystemd gnutls
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CMOCKA_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null)

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	-Wpointer-arith -Wformat=2 -Wno-unused-parameter
CFLAGS ?= -O2 -g
override CFLAGS += -std=gnu11 $(WARN) -fPIC -fvisibility=hidden \
	-D_GNU_SOURCE -DNBDD_SYSCONFDIR='"$(SYSCONFDIR)"' \
	-DNBDD_PLUGINDIR='"$(PLUGINDIR)"' \
	-Iinclude -Ilib $(PKG_CFLAGS)
ifneq ($(SANITIZE),)
override CFLAGS += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
override LDFLAGS += -fsanitize=$(SANITIZE)
endif
LIBS := $(PKG_LIBS) -ldl -lpthread

# ---- sources: every .c in these directories belongs to that artefact ----
LIB_SRC    := $(sort $(wildcard lib/*.c lib/*/*.c))
DAEMON_SRC := $(sort $(wildcard daemon/*.c))
CTL_SRC    := $(sort $(wildcard nbdctl/*.c))
COMMON_SRC := $(sort $(wildcard common/*.c))
UNIT_SRC   := $(sort $(wildcard tests/unit/test_*.c))
UNIT_HELPERS := $(sort $(filter-out $(UNIT_SRC),$(wildcard tests/unit/*.c)))
EXAMPLE_PLUGINS := $(sort $(wildcard examples/plugins/*.c))
EXAMPLE_PROGS   := $(sort $(wildcard examples/programs/*.c))

obj = $(patsubst %.c,$(B)/%.o,$(1))

# `make V=1` shows the full commands.
ifeq ($(V),1)
Q :=
say = @true
else
Q := @
say = @printf '  %-6s %s\n' $(1) $(2)
endif

LIB_A    := $(B)/libnbdd.a
LIB_SO   := $(B)/libnbdd.so.$(VERSION)
NBDD     := $(B)/nbdd
NBDCTL   := $(B)/nbdctl
UNIT_BINS := $(patsubst tests/unit/%.c,$(B)/tests/unit/%,$(UNIT_SRC))
PLUGINS  := $(patsubst examples/plugins/%.c,$(B)/examples/%.so,$(EXAMPLE_PLUGINS))
# Backends that need a big library (librbd, libnbd) are plugins, so that
# libnbdd does not depend on them: plugins/NAME/*.c -> $(B)/plugins/NAME.so,
# installed in PLUGINDIR, where "NAME:..." finds them. plugins/NAME/plugin.mk
# sets PLUGIN_PKGS_NAME (pkg-config names) and PLUGIN_LIBS_NAME.
BACKEND_PLUGIN_NAMES := $(sort $(patsubst plugins/%/,%,$(dir $(wildcard plugins/*/*.c))))
BACKEND_PLUGINS := $(BACKEND_PLUGIN_NAMES:%=$(B)/plugins/%.so)
-include $(wildcard plugins/*/plugin.mk)
PROGS    := $(patsubst examples/programs/%.c,$(B)/examples/%,$(EXAMPLE_PROGS))

# Executables carry the whole library and export its public (default
# visibility) symbols, so plugins they dlopen resolve nbdd_backend_error()
# and friends against the same copy.
LINK_LIB := -Wl,--whole-archive $(LIB_A) -Wl,--no-whole-archive -rdynamic

# Keep test objects: they are intermediate files of pattern rules.
.SECONDARY:

.PHONY: all lib tests check check-unit check-interop check-vm check-ceph-vm check-asan demo \
	deps install uninstall clean fuzz bench format

UNITS := $(patsubst systemd/%.in,$(B)/systemd/%,$(wildcard systemd/*.in))

all: lib $(NBDD) $(NBDCTL) $(PLUGINS) $(BACKEND_PLUGINS) $(PROGS) $(B)/libnbdd.pc $(UNITS)

lib: $(LIB_A) $(LIB_SO)

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(call say,CC,$@)
	$(Q)$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(LIB_A): $(call obj,$(LIB_SRC))
	@rm -f $@
	$(call say,AR,$@)
	$(Q)ar rcs $@ $^

$(LIB_SO): $(call obj,$(LIB_SRC))
	$(call say,LD,$@)
	$(Q)$(CC) -shared -Wl,-soname,libnbdd.so.$(SOMAJOR) $(LDFLAGS) -o $@ $^ $(LIBS)
	$(Q)ln -sf libnbdd.so.$(VERSION) $(B)/libnbdd.so.$(SOMAJOR)
	$(Q)ln -sf libnbdd.so.$(SOMAJOR) $(B)/libnbdd.so

$(NBDD): $(call obj,$(DAEMON_SRC) $(COMMON_SRC)) $(LIB_A)
	$(call say,LD,$@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $(call obj,$(DAEMON_SRC) $(COMMON_SRC)) $(LINK_LIB) $(LIBS)

# nbdctl's objects cannot go to $(B)/nbdctl/: that path is the program.
CTL_OBJ := $(patsubst nbdctl/%.c,$(B)/nbdctl-obj/%.o,$(CTL_SRC))

$(B)/nbdctl-obj/%.o: nbdctl/%.c
	@mkdir -p $(dir $@)
	$(call say,CC,$@)
	$(Q)$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(NBDCTL): $(CTL_OBJ) $(call obj,$(COMMON_SRC)) $(LIB_A)
	$(call say,LD,$@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $(CTL_OBJ) $(call obj,$(COMMON_SRC)) $(LINK_LIB) $(LIBS)

# Unit tests pull from the archive only the objects they use, so each
# module can be tested on its own; -rdynamic lets test plugins link back.
$(B)/tests/unit/%: $(B)/tests/unit/%.o $(call obj,$(UNIT_HELPERS) $(COMMON_SRC)) $(LIB_A)
	$(call say,LD,$@)
	$(Q)$(CC) $(LDFLAGS) -rdynamic -o $@ $< $(call obj,$(UNIT_HELPERS) $(COMMON_SRC)) $(LIB_A) $(LIBS) $(CMOCKA_LIBS)

# Plugins are built the way a third party would: only the public header.
$(B)/examples/%.so: examples/plugins/%.c include/nbdd/backend.h
	@mkdir -p $(dir $@)
	$(call say,PLUGIN,$@)
	$(Q)$(CC) $(CFLAGS) -shared -o $@ $< $(LDFLAGS)

define backend_plugin
$(B)/plugins/$(1).so: $(wildcard plugins/$(1)/*.c plugins/$(1)/*.h) include/nbdd/backend.h
	@mkdir -p $$(@D)
	$$(call say,PLUGIN,$$@)
	$$(Q)$$(CC) $$(CFLAGS) -Iplugins/$(1) $$(if $$(PLUGIN_PKGS_$(1)),$$(shell pkg-config --cflags $$(PLUGIN_PKGS_$(1)))) \
		-shared -o $$@ $$(filter %.c,$$^) $$(LDFLAGS) \
		$$(if $$(PLUGIN_PKGS_$(1)),$$(shell pkg-config --libs $$(PLUGIN_PKGS_$(1)))) $$(PLUGIN_LIBS_$(1))
endef
$(foreach n,$(BACKEND_PLUGIN_NAMES),$(eval $(call backend_plugin,$(n))))

$(B)/examples/%: examples/programs/%.c $(LIB_SO)
	@mkdir -p $(dir $@)
	$(call say,LD,$@)
	$(Q)$(CC) $(CFLAGS) -o $@ $< -L$(B) -lnbdd -Wl,-rpath,'$$ORIGIN/..' $(LDFLAGS) -lpthread

$(B)/libnbdd.pc: libnbdd.pc.in Makefile
	@mkdir -p $(B)
	$(Q)sed -e 's|@PREFIX@|$(PREFIX)|; s|@LIBDIR@|$(LIBDIR)|; s|@INCLUDEDIR@|$(INCLUDEDIR)|; s|@VERSION@|$(VERSION)|' $< > $@

$(B)/systemd/%: systemd/%.in Makefile
	@mkdir -p $(dir $@)
	$(Q)sed -e 's|@SBINDIR@|$(SBINDIR)|g; s|@SYSCONFDIR@|$(SYSCONFDIR)|g' $< > $@

# ---- tests ----
# tests/run prints one line per test and closes with "N passed, N failed".

deps:
	scripts/deps.sh install

# The unit test programs (tests/run only runs those that exist).
tests: $(UNIT_BINS)

check: 
	@scripts/deps.sh ensure
	$(MAKE) all tests
	B=$(B) tests/run all

check-unit: all tests
	B=$(B) tests/run unit

check-interop: all
	B=$(B) tests/run interop

check-vm: all
	B=$(B) tests/run vm

# The rbd backend on the real kernel, with a Ceph cluster inside a VM of
# its own (about 3.5 minutes under emulation; part of check too).
check-ceph-vm: all
	@scripts/deps.sh ensure
	B=$(B) tests/run ceph-vm

# The unit and interop suites again under ASan + UBSan, in build-asan.
check-asan:
	@scripts/deps.sh ensure
	$(MAKE) SANITIZE=address,undefined CC=clang all tests
	B=build-address-undefined NBDD_SANITIZED=1 tests/run unit interop

demo:
	@scripts/deps.sh ensure
	$(MAKE) all
	B=$(B) scripts/demo.sh

fuzz:
	$(MAKE) -C fuzz

bench: all
	B=$(B) bench/run

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

# ---- install ----
install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) \
		$(DESTDIR)$(INCLUDEDIR)/nbdd $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(PLUGINDIR) \
		$(DESTDIR)$(SYSCONFDIR)/nbdd/backends.d $(DESTDIR)$(SYSCONFDIR)/nbdd/mappings.d \
		$(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(UDEVRULESDIR)
	install -m 0644 $(UNITS) $(DESTDIR)$(SYSTEMDUNITDIR)/
	$(if $(BACKEND_PLUGINS),install -m 0755 $(BACKEND_PLUGINS) $(DESTDIR)$(PLUGINDIR)/)
	install -m 0644 udev/*.rules $(DESTDIR)$(UDEVRULESDIR)/
	install -m 0755 $(NBDD) $(DESTDIR)$(SBINDIR)/nbdd
	install -m 0755 $(NBDCTL) $(DESTDIR)$(SBINDIR)/nbdctl
	install -m 0755 $(LIB_SO) $(DESTDIR)$(LIBDIR)/
	ln -sf libnbdd.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libnbdd.so.$(SOMAJOR)
	ln -sf libnbdd.so.$(SOMAJOR) $(DESTDIR)$(LIBDIR)/libnbdd.so
	install -m 0644 $(LIB_A) $(DESTDIR)$(LIBDIR)/
	install -m 0644 include/nbdd/*.h $(DESTDIR)$(INCLUDEDIR)/nbdd/
	install -m 0644 $(B)/libnbdd.pc $(DESTDIR)$(PKGCONFIGDIR)/
	for m in docs/man/*.[1-8]; do \
		[ -e "$$m" ] || continue; s=$${m##*.}; \
		install -d $(DESTDIR)$(MANDIR)/man$$s; \
		install -m 0644 $$m $(DESTDIR)$(MANDIR)/man$$s/; \
	done

clean:
	rm -rf build build-*

-include $(shell find $(B) -name '*.d' 2>/dev/null)
