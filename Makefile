# amp — the two commands a newcomer needs:
#   make run    install what is missing, build, and run PostgreSQL for ./.amp in the foreground
#   make test   the whole test suite (as root it runs as an unprivileged account)

SWIFT       ?= $(shell command -v swift 2>/dev/null || echo /opt/swift/usr/bin/swift)
export PATH := $(PATH):/opt/swift/usr/bin
CONFIG      ?= debug
BUILD_FLAGS ?=
AMP_DIR     ?= $(CURDIR)
UID         := $(shell id -u)

# SwiftPM clones dependencies with git. Where they come from a local mirror owned by another
# account (a CI image's /opt/swift-packages), git refuses ("dubious ownership") unless
# safe.directory allows it, and it reads that only from global or system configuration. So
# SwiftPM runs with a global config of the build's own that includes the user's ~/.gitconfig.
export GIT_CONFIG_GLOBAL := $(CURDIR)/.build/gitconfig

# SwiftPM leaves a /tmp/TemporaryDirectory.* behind for every build and test command; its
# temporary files go below .build instead, so no run of ours litters /tmp. (The test and
# bench scripts make their own temporary directories in /tmp explicitly.)
export TMPDIR := $(CURDIR)/.build/tmp
$(shell mkdir -p "$(CURDIR)/.build/tmp")

PREFIX      ?= /usr/local
DESTDIR     ?=
USER_PREFIX ?= $(HOME)/.local

.PHONY: all deps deps-test build build-all run test test-local faults faults-local faults-quick fuzz bench bench-local man check-man install install-files install-user uninstall uninstall-user deb clean

all: build

deps: .build/gitconfig
	@packaging/build-deps.sh

deps-test: .build/gitconfig
	@packaging/build-deps.sh test

.build/gitconfig:
	@mkdir -p .build
	@printf '[include]\n\tpath = ~/.gitconfig\n[safe]\n\tdirectory = *\n' > $@

build: deps
	$(SWIFT) build -c $(CONFIG) $(BUILD_FLAGS) --product ampd

build-all: deps
	$(SWIFT) build -c $(CONFIG) $(BUILD_FLAGS) --product ampd
	$(SWIFT) build -c $(CONFIG) $(BUILD_FLAGS) --product amp-generator
	$(SWIFT) build -c $(CONFIG) $(BUILD_FLAGS) --product ampctl

## make run: a managed PostgreSQL for this directory's .amp, in the foreground (Ctrl+C stops it).
run: build
	@echo "amp: starting ampd for $(AMP_DIR)/.amp (Ctrl+C to stop)" >&2
	$$($(SWIFT) build -c $(CONFIG) --show-bin-path)/ampd run --amp-dir "$(AMP_DIR)"

## make test: every test, against a real PostgreSQL.
test: deps-test
ifeq ($(UID),0)
	Tests/harness/as-unprivileged.sh test-local
	$(SWIFT) build --product ampd $(BUILD_FLAGS)
	Tests/harness/root-smoke.sh "$$($(SWIFT) build --show-bin-path)/ampd"
	/usr/bin/python3 Tests/faults/faults.py --bin "$$($(SWIFT) build --show-bin-path)" --root-user "$${AMP_TEST_USER:-amp-test}"
	Tests/harness/as-unprivileged.sh deb-test
else
	$(MAKE) test-local
endif

test-local: .build/gitconfig
	AMP_WERROR=1 $(SWIFT) build --build-tests $(BUILD_FLAGS)
	AMP_WERROR=1 $(SWIFT) test --skip-build $(BUILD_FLAGS)
	$(MAKE) check-man
	/usr/bin/python3 Tests/harness/check-imports.py
	$(MAKE) faults-quick
	Tests/fuzz/run.sh $${AMP_FUZZ_SECONDS:-20}

## make faults: the fault suite (crashes under load, bad input, varlink abuse, full disk as root);
## one line per fault with its figures. Its quick part runs in `make test`.
faults: deps-test
ifeq ($(UID),0)
	Tests/harness/as-unprivileged.sh faults-local
	$(SWIFT) build --product ampd $(BUILD_FLAGS)
	/usr/bin/python3 Tests/faults/faults.py --bin "$$($(SWIFT) build --show-bin-path)" --root-user "$${AMP_TEST_USER:-amp-test}"
else
	$(MAKE) faults-local
endif

faults-local: .build/gitconfig
	$(SWIFT) build --product ampd $(BUILD_FLAGS)
	/usr/bin/python3 Tests/faults/faults.py --bin "$$($(SWIFT) build --show-bin-path)"

faults-quick: .build/gitconfig
	$(SWIFT) build --product ampd $(BUILD_FLAGS)
	/usr/bin/python3 Tests/faults/faults.py --bin "$$($(SWIFT) build --show-bin-path)" --quick

## make fuzz: the libFuzzer targets (TOML parser, config loader, varlink JSON and framer,
## PostgreSQL log parser), FUZZ_SECONDS each (default 300); `make test` runs them for 20 s each.
fuzz: .build/gitconfig
	Tests/fuzz/run.sh $${FUZZ_SECONDS:-300}

## make bench: start/stop/status/idle figures beside PostgreSQL alone, pg_ctl and the PyPI
## peers; writes $(BENCH_OUT) (default bench-results.json) and .build/benchmarks.md.
bench: deps-test
ifeq ($(UID),0)
	Tests/harness/as-unprivileged.sh bench-local
else
	$(MAKE) bench-local
endif

bench-local: .build/gitconfig
	SWIFT=$(SWIFT) Tests/bench/run.sh

## make man: regenerate man/man1/ampctl.1 from ampctl's ArgumentParser definitions.
man: .build/gitconfig
	packaging/man-ampctl.sh man/man1/ampctl.1
	packaging/man-settings.sh man/man5/amp.toml.5

## make check-man: ampctl.1 matches the commands and amp.toml.5's settings table the declarations
## (no drift), and every page lints clean.
check-man: .build/gitconfig
	packaging/man-ampctl.sh .build/ampctl.1.generated
	@diff -u man/man1/ampctl.1 .build/ampctl.1.generated || { echo "amp: man/man1/ampctl.1 is out of date; run: make man" >&2; exit 1; }
	cp man/man5/amp.toml.5 .build/amp.toml.5.generated && packaging/man-settings.sh .build/amp.toml.5.generated
	@diff -u man/man5/amp.toml.5 .build/amp.toml.5.generated || { echo "amp: the settings table of man/man5/amp.toml.5 is out of date; run: make man" >&2; exit 1; }
	@if command -v mandoc >/dev/null; then mandoc -T lint -W warning man/man*/* && echo "amp: man pages lint clean" >&2; \
	  else echo "amp: mandoc not installed; man pages not linted (apt install mandoc)" >&2; fi

## make install: system-wide (as root; PREFIX=/usr/local, DESTDIR for staging): ampd, ampctl,
## the user generator, the amp@.service template, man pages and ampctl's shell completions,
## in the same layout as the .deb. Every user then gets amp@NAME.service for the projects in
## their registry on `systemctl --user daemon-reload`.
install: CONFIG := release
install: build-all install-files
	@echo "amp: installed under $(DESTDIR)$(PREFIX); each user runs: systemctl --user daemon-reload" >&2

BIN_PATH = $$($(SWIFT) build -c $(CONFIG) --show-bin-path)
# Where the completion directories are relative to PREFIX (/usr/share/... for /usr and /usr/local).
install-files:
	install -D -m 0755 "$(BIN_PATH)/ampd" "$(DESTDIR)$(PREFIX)/bin/ampd"
	install -D -m 0755 "$(BIN_PATH)/ampctl" "$(DESTDIR)$(PREFIX)/bin/ampctl"
	install -D -m 0755 "$(BIN_PATH)/amp-generator" "$(DESTDIR)$(PREFIX)/lib/systemd/user-generators/amp-generator"
	install -d "$(DESTDIR)$(PREFIX)/lib/systemd/user" "$(DESTDIR)$(PREFIX)/share/man/man1" \
	  "$(DESTDIR)$(PREFIX)/share/man/man5" "$(DESTDIR)$(PREFIX)/share/man/man8" \
	  "$(DESTDIR)$(PREFIX)/share/bash-completion/completions" "$(DESTDIR)$(PREFIX)/share/zsh/vendor-completions" \
	  "$(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d"
	sed 's|@BINDIR@|$(PREFIX)/bin|g' units/amp@.service.in > "$(DESTDIR)$(PREFIX)/lib/systemd/user/amp@.service"
	chmod 0644 "$(DESTDIR)$(PREFIX)/lib/systemd/user/amp@.service"
	sed 's|@BINDIR@|$(PREFIX)/bin|g' units/amp-backup-verify@.service.in > "$(DESTDIR)$(PREFIX)/lib/systemd/user/amp-backup-verify@.service"
	install -m 0644 units/amp-backup-verify@.timer "$(DESTDIR)$(PREFIX)/lib/systemd/user/amp-backup-verify@.timer"
	chmod 0644 "$(DESTDIR)$(PREFIX)/lib/systemd/user/amp-backup-verify@.service"
	for s in 1 5 8; do install -m 0644 man/man$$s/*.$$s "$(DESTDIR)$(PREFIX)/share/man/man$$s/"; done
	"$(BIN_PATH)/ampctl" --generate-completion-script bash | sed "1{/^#!/d}" > "$(DESTDIR)$(PREFIX)/share/bash-completion/completions/ampctl"
	"$(BIN_PATH)/ampctl" --generate-completion-script zsh > "$(DESTDIR)$(PREFIX)/share/zsh/vendor-completions/_ampctl"
	"$(BIN_PATH)/ampctl" --generate-completion-script fish > "$(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/ampctl.fish"
	install -d "$(DESTDIR)$(PREFIX)/share/cockpit/amp"
	install -m 0644 packaging/cockpit/amp/* "$(DESTDIR)$(PREFIX)/share/cockpit/amp/"

## make deb: the Debian package, built from this tree with debhelper, into .build/deb/.
deb:
	@command -v dpkg-buildpackage >/dev/null || { echo "amp: install dpkg-dev debhelper fakeroot chrpath lintian" >&2; exit 69; }
	rm -rf .build/deb && mkdir -p .build/deb
	ln -sfn packaging/debian debian
	dpkg-buildpackage -b --no-sign --buildinfo-option=-u.build/deb --changes-option=-u.build/deb \
	  --buildinfo-file=.build/deb/amp.buildinfo --changes-file=.build/deb/amp.changes; rc=$$?; rm -f debian; exit $$rc
	@ls .build/deb/*.deb

## make install-user: for the current user only, without root (USER_PREFIX=~/.local). A user
## generator cannot be installed per user, so the registry is rendered into
## ~/.config/systemd/user instead (amp-generator --sync-user-units, also run by ampctl).
install-user: CONFIG := release
install-user: build-all
	install -D -m 0755 "$$($(SWIFT) build -c $(CONFIG) --show-bin-path)/ampd" "$(USER_PREFIX)/bin/ampd"
	install -D -m 0755 "$$($(SWIFT) build -c $(CONFIG) --show-bin-path)/ampctl" "$(USER_PREFIX)/bin/ampctl"
	install -D -m 0755 "$$($(SWIFT) build -c $(CONFIG) --show-bin-path)/amp-generator" "$(USER_PREFIX)/bin/amp-generator"
	install -d "$(USER_PREFIX)/share/systemd/user" "$(USER_PREFIX)/share/man/man8" "$(USER_PREFIX)/share/man/man1"
	install -m 0644 man/man1/*.1 "$(USER_PREFIX)/share/man/man1/"
	sed 's|@BINDIR@|$(USER_PREFIX)/bin|g' units/amp@.service.in > "$(USER_PREFIX)/share/systemd/user/amp@.service"
	sed 's|@BINDIR@|$(USER_PREFIX)/bin|g' units/amp-backup-verify@.service.in > "$(USER_PREFIX)/share/systemd/user/amp-backup-verify@.service"
	install -m 0644 units/amp-backup-verify@.timer "$(USER_PREFIX)/share/systemd/user/amp-backup-verify@.timer"
	install -m 0644 man/man8/*.8 "$(USER_PREFIX)/share/man/man8/"
	install -d "$(USER_PREFIX)/share/cockpit/amp"
	install -m 0644 packaging/cockpit/amp/* "$(USER_PREFIX)/share/cockpit/amp/"
	"$(USER_PREFIX)/bin/amp-generator" --sync-user-units
	-systemctl --user daemon-reload

uninstall:
	rm -f "$(DESTDIR)$(PREFIX)/bin/ampd" "$(DESTDIR)$(PREFIX)/bin/ampctl" \
	  "$(DESTDIR)$(PREFIX)/lib/systemd/user-generators/amp-generator" "$(DESTDIR)$(PREFIX)/lib/systemd/user/amp@.service" \
	  "$(DESTDIR)$(PREFIX)/lib/systemd/user/amp-backup-verify@.service" "$(DESTDIR)$(PREFIX)/lib/systemd/user/amp-backup-verify@.timer" \
	  "$(DESTDIR)$(PREFIX)/share/man/man1/ampctl.1" "$(DESTDIR)$(PREFIX)/share/man/man5/amp.toml.5" \
	  "$(DESTDIR)$(PREFIX)/share/man/man5/amp@.service.5" "$(DESTDIR)$(PREFIX)/share/man/man8/ampd.8" \
	  "$(DESTDIR)$(PREFIX)/share/man/man8/amp-generator.8" \
	  "$(DESTDIR)$(PREFIX)/share/bash-completion/completions/ampctl" "$(DESTDIR)$(PREFIX)/share/zsh/vendor-completions/_ampctl" \
	  "$(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/ampctl.fish"
	rm -rf "$(DESTDIR)$(PREFIX)/share/cockpit/amp"

uninstall-user:
	rm -f "$(USER_PREFIX)/bin/ampd" "$(USER_PREFIX)/bin/ampctl" "$(USER_PREFIX)/share/man/man1/ampctl.1" "$(USER_PREFIX)/bin/amp-generator" "$(USER_PREFIX)/share/systemd/user/amp@.service" \
	  "$(USER_PREFIX)/share/systemd/user/amp-backup-verify@.service" "$(USER_PREFIX)/share/systemd/user/amp-backup-verify@.timer" \
	  "$(USER_PREFIX)/share/man/man8/ampd.8" "$(USER_PREFIX)/share/man/man8/amp-generator.8"
	rm -rf "$(USER_PREFIX)/share/cockpit/amp"
	-systemctl --user daemon-reload

clean:
	rm -rf .build
