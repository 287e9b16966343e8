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

.PHONY: all deps build run test test-local clean

all: build

deps: .build/gitconfig
	@packaging/build-deps.sh

.build/gitconfig:
	@mkdir -p .build
	@printf '[include]\n\tpath = ~/.gitconfig\n[safe]\n\tdirectory = *\n' > $@

build: deps
	$(SWIFT) build -c $(CONFIG) $(BUILD_FLAGS) --product ampd

## make run: a managed PostgreSQL for this directory's .amp, in the foreground (Ctrl+C stops it).
run: build
	@echo "amp: starting ampd for $(AMP_DIR)/.amp (Ctrl+C to stop)" >&2
	$$($(SWIFT) build -c $(CONFIG) --show-bin-path)/ampd run --amp-dir "$(AMP_DIR)"

## make test: every test, against a real PostgreSQL.
test: deps
ifeq ($(UID),0)
	Tests/harness/as-unprivileged.sh test-local
	$(SWIFT) build --product ampd $(BUILD_FLAGS)
	Tests/harness/root-smoke.sh "$$($(SWIFT) build --show-bin-path)/ampd"
else
	$(MAKE) test-local
endif

test-local: .build/gitconfig
	AMP_WERROR=1 $(SWIFT) build --build-tests $(BUILD_FLAGS)
	AMP_WERROR=1 $(SWIFT) test --skip-build $(BUILD_FLAGS)

clean:
	rm -rf .build
