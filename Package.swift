// swift-tools-version:6.1
import PackageDescription

/// Warnings are errors in CI (`AMP_WERROR=1`, set by `.ci/run` and `make test`):
/// a clean build is part of the contract, but a developer's local build is not blocked by one.
let strict: [SwiftSetting] =
    Context.environment["AMP_WERROR"] == "1" ? [.unsafeFlags(["-warnings-as-errors"])] : []

let package = Package(
    name: "amp",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "ampd", targets: ["ampd"]),
        .executable(name: "amp-generator", targets: ["amp-generator"]),
        .executable(name: "ampctl", targets: ["ampctl"]),
        .library(name: "AmpPostgres", targets: ["AmpPostgres"]),
        .library(name: "Varlink", targets: ["Varlink"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // log(event:) and LogEvent, which the log handlers implement, came with swift-log 1.11.
        .package(url: "https://github.com/apple/swift-log", from: "1.11.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        // Short-lived commands (postgres --version, ampctl's runs of systemctl and journalctl);
        // without its Foundation trait, so no Foundation is linked for it.
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.2", traits: []),
        // FilePath and Errno in ChildProcess (swift-subprocess's own dependency, declared as used).
        .package(url: "https://github.com/apple/swift-system", from: "1.5.0"),
    ],
    targets: [
        // C libraries through pkg-config, each with a shim.h (model: swiftly's CLibArchive).
        // libpq's declarations only; the library is loaded with dlopen at first use (see shim.h).
        .systemLibrary(
            name: "CLibPQ",
            providers: [.apt(["libpq-dev"])]),
        .systemLibrary(
            name: "CSystemd", pkgConfig: "libsystemd",
            providers: [.apt(["libsystemd-dev"])]),
        // fork/exec with PR_SET_PDEATHSIG, a process group and a user switch: things
        // posix_spawn cannot do and that must not run Swift code between fork and exec.
        .target(name: "CSpawn"),
        // Unix sockets, SO_PEERCRED, eventfd and poll for the varlink server and client, and the
        // timers and worker threads of ThreadSupport.
        .target(name: "CSocket"),
        // File copies by reflink / copy_file_range, and flock, for the cluster template cache.
        .target(name: "CFiles"),
        // pthread_setname_np (a GNU extension Swift's Glibc module does not export).
        .target(name: "CThreads"),

        // POSIX file, path, text and terminal helpers: the one home of each (read a file, list
        // a directory, normalise a path, trim, hash, write all, colour or not).
        .target(
            name: "SystemSupport",
            swiftSettings: strict),
        // Threads for blocking work, and the one-shot values and races that connect them to
        // Swift concurrency (no unstructured tasks, no shared pool).
        .target(
            name: "ThreadSupport",
            dependencies: ["CSocket", "CThreads"],
            swiftSettings: strict),
        // Child processes: fork/exec with PR_SET_PDEATHSIG, process groups, a reaper thread each,
        // for the postmaster; short-lived commands through swift-subprocess.
        .target(
            name: "ChildProcess",
            dependencies: [
                "CSpawn", "SystemSupport", "ThreadSupport", .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict),
        .target(
            name: "AmpPostgres",
            dependencies: [
                "CLibPQ", "CFiles", "CSocket", "CSpawn", "ChildProcess", "SystemSupport", "ThreadSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict),
        .target(
            name: "AmpBackup",
            dependencies: ["AmpPostgres", "CFiles", "ChildProcess", "SystemSupport", "ThreadSupport", "Varlink", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict),
        .target(
            name: "AmpMetrics",
            dependencies: [],
            swiftSettings: strict),
        // PgBouncer in front of a cluster: its plan, configuration, auth objects and figures.
        .target(
            name: "AmpPool",
            dependencies: ["AmpConfig", "AmpPostgres"],
            swiftSettings: strict),
        .target(
            name: "AmpConfig",
            dependencies: ["AmpTuning", "SystemSupport"],
            swiftSettings: strict),
        .target(
            name: "AmpLogging",
            dependencies: [.product(name: "Logging", package: "swift-log")],
            swiftSettings: strict),
        // The systemd adapters: sd_notify, the journal, credentials, unit files and the generator.
        .target(
            name: "AmpSystemd",
            dependencies: ["AmpRegistry", "AmpConfig", "CSystemd", "SystemSupport", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict),
        // The daemon's life as pure state machines (events in, actions out, no I/O): what to
        // tell systemd and when, when to restart PostgreSQL, what supervision does next.
        .target(
            name: "AmpSupervision",
            dependencies: ["AmpProtocol", "AmpSystemd"],
            swiftSettings: strict),
        .target(
            name: "Varlink",
            dependencies: ["CSocket", "ThreadSupport"],
            swiftSettings: strict),
        .target(
            name: "AmpProtocol",
            dependencies: ["Varlink", "SystemSupport"],
            swiftSettings: strict),
        .target(
            name: "AmpTuning",
            dependencies: ["SystemSupport"],
            swiftSettings: strict),
        .target(
            name: "AmpRegistry",
            dependencies: ["AmpConfig", "SystemSupport"],
            swiftSettings: strict),
        .target(
            name: "AmpDaemon",
            dependencies: [
                "AmpBackup", "AmpMetrics", "AmpPool", "AmpPostgres", "AmpConfig", "AmpLogging", "AmpSupervision", "AmpSystemd", "AmpRegistry", "AmpProtocol", "AmpTuning", "Varlink", "ChildProcess", "CSocket", "SystemSupport", "ThreadSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict),
        .executableTarget(
            name: "ampd",
            dependencies: ["AmpDaemon"],
            swiftSettings: strict),
        .target(
            name: "AmpControl",
            dependencies: [
                "AmpBackup", "AmpConfig", "AmpMetrics", "AmpPostgres", "AmpProtocol", "AmpRegistry", "AmpSystemd", "Varlink", "ChildProcess", "SystemSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                // SIGINT/SIGTERM/SIGHUP as an async sequence, so an interrupted import cleans up.
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict),
        .executableTarget(
            name: "ampctl",
            dependencies: ["AmpControl"],
            swiftSettings: strict),
        .executableTarget(
            name: "amp-generator",
            dependencies: ["AmpSystemd", "SystemSupport"],
            swiftSettings: strict),

        .testTarget(
            name: "AmpControlTests",
            dependencies: ["AmpControl", "AmpConfig", "SystemSupport"],
            swiftSettings: strict),
        .testTarget(
            name: "SystemSupportTests",
            dependencies: ["SystemSupport"],
            swiftSettings: strict),
        .testTarget(
            name: "AmpConfigTests",
            dependencies: ["AmpConfig", "SystemSupport"],
            exclude: ["toml-test"],
            swiftSettings: strict),
        .testTarget(
            name: "AmpPostgresTests",
            dependencies: ["AmpPostgres", "ChildProcess"],
            swiftSettings: strict),
        .testTarget(
            name: "AmpBackupTests",
            dependencies: ["AmpBackup"],
            swiftSettings: strict),
        .testTarget(
            name: "AmpMetricsTests",
            dependencies: ["AmpMetrics"],
            swiftSettings: strict),
        .testTarget(
            name: "AmpPoolTests",
            dependencies: ["AmpPool", "AmpConfig"],
            swiftSettings: strict),
        .testTarget(
            name: "AmpDaemonTests",
            dependencies: ["AmpDaemon", "AmpConfig", "AmpPostgres", "AmpTuning"],
            swiftSettings: strict),
        .testTarget(
            name: "AmpProtocolTests",
            dependencies: ["AmpProtocol", "Varlink"],
            swiftSettings: strict),
        .testTarget(
            name: "AmpTuningTests",
            dependencies: ["AmpTuning"],
            swiftSettings: strict),
        .testTarget(
            name: "ThreadSupportTests",
            dependencies: ["ThreadSupport"],
            swiftSettings: strict),
        .testTarget(
            name: "VarlinkTests",
            dependencies: ["Varlink", "CSocket", "ThreadSupport"],
            swiftSettings: strict),
        .testTarget(
            name: "AmpRegistryTests",
            dependencies: ["AmpRegistry"],
            swiftSettings: strict),
        .testTarget(
            name: "AmpSystemdTests",
            dependencies: ["AmpSystemd", "AmpRegistry", "AmpConfig", "SystemSupport"],
            swiftSettings: strict),
        .testTarget(
            name: "AmpSupervisionTests",
            dependencies: ["AmpSupervision", "AmpProtocol", "AmpSystemd"],
            swiftSettings: strict),
        .testTarget(
            name: "AmpdIntegrationTests",
            dependencies: ["ampd", "amp-generator", "ampctl", "ChildProcess", "ThreadSupport", "AmpPostgres", "AmpProtocol", "AmpRegistry", "AmpSystemd", "SystemSupport", "Varlink", "CSocket"],
            swiftSettings: strict),
    ],
    swiftLanguageModes: [.v6]
)

// libFuzzer targets (`make fuzz`, and briefly in `make test`): built only with AMP_FUZZ=1 and
// `swift build --sanitize=fuzzer` (libFuzzer supplies `main`), in a scratch path of their own.
if Context.environment["AMP_FUZZ"] == "1" {
    for (name, dependencies) in [("FuzzTOML", ["AmpConfig", "SystemSupport"]), ("FuzzConfig", ["AmpConfig", "AmpTuning"]), ("FuzzVarlinkJSON", ["Varlink"]),
                                 ("FuzzVarlinkFramer", ["Varlink"]), ("FuzzPostgresLog", ["AmpPostgres"]),
                                 ("FuzzPgBackRestInfo", ["AmpBackup"])] {
        package.targets.append(.executableTarget(
            name: name, dependencies: dependencies.map { .target(name: $0) }, path: "Tests/fuzz/\(name)",
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]))
    }
}
