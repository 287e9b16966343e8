#if canImport(Glibc)
import Glibc
#endif
import ChildProcess
import Logging
import SystemSupport

/// Configures and starts one PostgreSQL cluster (seed IC-3).
///
/// A value type: every method returns a modified copy.
///
/// ```swift
/// let server = try await PostgresBuilder(dataDirectory: "/srv/app/.amp/metadb")
///     .locale("C")
///     .encoding("UTF8")
///     .configParameter("shared_buffers", "128MB")
///     .initdbArgument("--data-checksums")
///     .binaryDirectory("/usr/lib/postgresql/15/bin")
///     .start()
/// print(server.handle.url)
/// try await server.run()   // until graceful shutdown; then stops PostgreSQL
/// ```
///
/// Nothing here knows about amp: the data directory, socket directory and account are the
/// caller's choice.
public struct PostgresBuilder: Sendable {
    /// The data directory (`PGDATA`).
    public private(set) var dataDirectory: String
    public private(set) var localeName = "C"
    public private(set) var encodingName = "UTF8"
    /// Server parameters passed as `-c name=value`, in the order given (later wins).
    public private(set) var parameters: [(name: String, value: String)] = []
    public private(set) var initdbArguments: [String] = []
    public private(set) var binaryDirectoryPath: String?
    /// Binaries already located and their version, when the caller did that (not again here).
    public private(set) var resolvedBinaries: (binaries: PostgresBinaries, version: PostgresVersion)?
    public private(set) var socketDirectoryPath: String?
    public private(set) var searchPath: String?
    public private(set) var account: ProcessCredentials?
    public private(set) var startTimeoutDuration: Duration = .seconds(60)
    public private(set) var stopTimeoutDuration: Duration = .seconds(30)
    public private(set) var runtimeDirectory: String?
    public private(set) var loggerValue = Logger(label: "postgres")
    public private(set) var useDevelopmentDefaults = true
    public private(set) var progressHandler: (@Sendable (PostgresStartPhase) -> Void)?
    public private(set) var diskFullHandler: (@Sendable (String) -> Void)?
    public private(set) var templateCache: ClusterTemplateCache?

    /// Development defaults (see <https://www.postgresql.org/docs/15/non-durability.html>),
    /// applied unless a parameter of the same name is given. `synchronous_commit` stays on:
    /// with `fsync` off it costs no throughput (the WAL write still reaches the kernel before
    /// COMMIT returns), and a crash of PostgreSQL then loses no acknowledged commit; only an
    /// OS crash or power loss can.
    public static let developmentDefaults: [(String, String)] = [
        ("fsync", "off"), ("synchronous_commit", "on"), ("full_page_writes", "off"), ("autovacuum", "off"),
    ]

    /// Creates a builder for the cluster in `dataDirectory` (made absolute).
    /// A logger that drops everything: for a short-lived server whose log lines would only
    /// clutter a command's own output (the server's errors still reach the thrown error).
    public static let silentLogger = Logger(label: "amp.postgres.silent") { _ in SwiftLogNoOpLogHandler() }

    public init(dataDirectory: String) {
        self.dataDirectory = absolutePath(dataDirectory)
        self.searchPath = getenv("PATH").map { String(cString: $0) }
        self.runtimeDirectory = getenv("XDG_RUNTIME_DIR").map { String(cString: $0) }
    }

    /// `initdb --locale`; default `C`.
    public func locale(_ value: String) -> Self { with { $0.localeName = value } }
    /// `initdb --encoding`; default `UTF8`.
    public func encoding(_ value: String) -> Self { with { $0.encodingName = value } }
    /// A server parameter, `postgres -c name=value`. Overrides the development defaults.
    public func configParameter(_ name: String, _ value: String) -> Self { with { $0.parameters.append((name, value)) } }
    /// An extra `initdb` argument, e.g. `--data-checksums` or `--wal-segsize=32`.
    public func initdbArgument(_ argument: String) -> Self { with { $0.initdbArguments.append(argument) } }
    /// The directory of `postgres` and `initdb`; skips discovery.
    public func binaryDirectory(_ path: String?) -> Self { with { $0.binaryDirectoryPath = path.map(absolutePath) } }
    /// Binaries the caller located and whose version it read: ``start()`` neither searches for
    /// them nor runs `postgres --version` again.
    public func binaries(_ binaries: PostgresBinaries, version: PostgresVersion) -> Self {
        with {
            $0.resolvedBinaries = (binaries, version)
            $0.binaryDirectoryPath = binaries.directory
        }
    }
    /// The socket directory; default: the data directory, or a short private directory when
    /// that path is too long for a Unix socket.
    public func socketDirectory(_ path: String?) -> Self { with { $0.socketDirectoryPath = path.map(absolutePath) } }
    /// The `PATH` searched for binaries (default: this process's).
    public func binarySearchPath(_ path: String?) -> Self { with { $0.searchPath = path } }
    /// The account PostgreSQL runs as; required when this process is root.
    public func user(_ credentials: ProcessCredentials?) -> Self { with { $0.account = credentials } }
    /// How long initdb plus start-up may take before the start fails; default 60 s.
    public func startTimeout(_ value: Duration) -> Self { with { $0.startTimeoutDuration = value } }
    /// How long a fast shutdown may take before SIGQUIT and SIGKILL; default 30 s.
    public func stopTimeout(_ value: Duration) -> Self { with { $0.stopTimeoutDuration = value } }
    /// `$XDG_RUNTIME_DIR` for the socket fallback (default: this process's).
    public func runtimeDirectory(_ path: String?) -> Self { with { $0.runtimeDirectory = path } }
    /// Where the library's own messages and PostgreSQL's output go.
    public func logger(_ logger: Logger) -> Self { with { $0.loggerValue = logger } }
    /// Called as ``start()`` moves through its phases (for status reports such as systemd's
    /// `STATUS=`); called on an arbitrary thread, so keep it short.
    public func onProgress(_ handler: @escaping @Sendable (PostgresStartPhase) -> Void) -> Self {
        with { $0.progressHandler = handler }
    }
    /// Creates new clusters by copying a cached template instead of running `initdb` each time
    /// (see ``ClusterTemplateCache``); `nil` (the default) always runs `initdb`. Not used when
    /// the server runs as another account (root mode).
    public func templateCache(directory: String?) -> Self {
        with { $0.templateCache = directory.map(ClusterTemplateCache.init(directory:)) }
    }
    /// Called (on the log reader's thread; must not block) when the running server reports a
    /// full disk, with the reason in words ("disk full on PATH: …").
    public func onDiskFull(_ handler: @escaping @Sendable (String) -> Void) -> Self { with { $0.diskFullHandler = handler } }
    /// Whether to apply ``developmentDefaults``; default `true`.
    public func developmentDefaults(_ enabled: Bool) -> Self { with { $0.useDevelopmentDefaults = enabled } }

    private func with(_ change: (inout Self) -> Void) -> Self {
        var copy = self
        change(&copy)
        return copy
    }

    /// What every server this library starts gets, before anything else: no TCP, a socket
    /// only the owner may use, and every log line on its standard error with PID and SQLSTATE.
    public static let fixedParameters: [(name: String, value: String)] = [
        ("listen_addresses", ""), ("unix_socket_permissions", "0700"), ("log_destination", "stderr"),
        ("logging_collector", "off"), ("log_line_prefix", PostgresLogParser.linePrefix),
    ]

    /// The effective parameters: the fixed ones, development defaults, then the caller's, one
    /// value per name.
    public var effectiveParameters: [(name: String, value: String)] {
        var result: [(String, String)] = []
        var index: [String: Int] = [:]
        func put(_ name: String, _ value: String) {
            let key = name.lowercased()
            if let i = index[key] { result[i] = (name, value) } else { index[key] = result.count; result.append((name, value)) }
        }
        for (n, v) in Self.fixedParameters { put(n, v) }
        if useDevelopmentDefaults { for (n, v) in Self.developmentDefaults { put(n, v) } }
        for (n, v) in parameters { put(n, v) }
        return result
    }

    /// The port in the socket's name: the `port` parameter, or 5432.
    public var port: Int {
        effectiveParameters.last { $0.name.lowercased() == "port" }.flatMap { Int($0.value) } ?? 5432
    }

    /// Finds the binaries, creates the cluster if needed, starts the server and waits until a
    /// query succeeds.
    ///
    /// When the calling task is cancelled during start-up, the server is stopped again
    /// before this throws `CancellationError` (wrapped as ``PostgresError/Code/startFailed``).
    public func start() async throws(PostgresError) -> PostgresServer {
        do {
            return try await starting()
        } catch where Task.isCancelled && !(error.underlying is CancellationError) {
            // Whatever step the cancellation cut short (initdb, the template copy, a probe),
            // the caller asked for it: say so, keeping that step's words.
            throw PostgresError(.startFailed, "start-up was cancelled (\(error.message))", details: error.details, underlying: CancellationError())
        }
    }

    private func starting() async throws(PostgresError) -> PostgresServer {
        let logger = loggerValue
        let progress = progressHandler ?? { _ in }
        progress(.checking)
        let binaries: PostgresBinaries, version: PostgresVersion
        if let resolvedBinaries {
            (binaries, version) = resolvedBinaries
        } else {
            binaries = try PostgresBinaries.locate(explicit: binaryDirectoryPath, searchPath: searchPath)
            version = try await binaries.version(cacheDirectory: templateCache.map { $0.directory + "/versions" })
        }
        logger.debug("using PostgreSQL \(version) from \(binaries.directory)")
        guard version.majorNumber >= PostgresDocs.oldestSupportedMajor else {
            throw PostgresError(
                .binariesNotFound,
                "PostgreSQL \(version) in \(binaries.directory) is too old; amp needs \(PostgresDocs.oldestSupportedMajor) or newer: install a newer postgresql package")
        }
        let owner = try resolveAccount()
        // An explicit socket directory is checked before anything is created.
        if let explicit = socketDirectoryPath, FileSystem.exists(explicit), !FileSystem.isDirectory(explicit) {
            throw PostgresError(.dataDirectoryUnusable, "socket directory \(explicit) exists but is not a directory; choose another (socket_dir, --socket-dir) or move it away")
        }
        let cluster = Cluster(dataDirectory: dataDirectory, binaries: binaries, version: version, owner: owner, logger: logger)
        try await cluster.prepare(
            locale: localeName, encoding: encodingName, initdbArguments: initdbArguments, timeout: startTimeoutDuration,
            templateCache: templateCache, progress: progress)

        let choice = SocketDirectory.choose(
            preferred: socketDirectoryPath ?? dataDirectory, port: port, runtimeDirectory: runtimeDirectory,
            uid: owner?.uid ?? geteuid(), key: dataDirectory)
        if let reason = choice.reason {
            logger.notice("using socket directory \(choice.directory): \(reason)")
        }
        try SocketDirectory.prepare(choice, owner: owner.map { ($0.uid, $0.gid) })
        try await LeftoverCleanup.run(
            dataDirectory: dataDirectory,
            socketLockFile: SocketDirectory.socketPath(directory: choice.directory, port: port) + ".lock",
            stopTimeout: stopTimeoutDuration, logger: logger)
        return try await PostgresServer.launch(
            binaries: binaries, version: version, dataDirectory: dataDirectory, socketDirectory: choice.directory,
            port: port, parameters: effectiveParameters, owner: owner, ownsSocketDirectory: choice.reason != nil,
            startTimeout: startTimeoutDuration, stopTimeout: stopTimeoutDuration, logger: logger, progress: progress,
            onDiskFull: diskFullHandler ?? { _ in })
    }

    private func resolveAccount() throws(PostgresError) -> ProcessCredentials? {
        if geteuid() == 0 {
            guard let account, account.uid != 0 else {
                throw PostgresError(
                    .permissionDenied,
                    "PostgreSQL refuses to run as root; choose an unprivileged account for it "
                        + "(e.g. --postgres-user postgres) or run as a normal user")
            }
            return account
        }
        if let account, account.uid != geteuid() {
            throw PostgresError(
                .permissionDenied,
                "cannot run PostgreSQL as \(account.name) (UID \(account.uid)): only root can switch accounts; drop the user setting")
        }
        return nil
    }
}

/// The phases of ``PostgresBuilder/start()``, reported through ``PostgresBuilder/onProgress(_:)``.
public enum PostgresStartPhase: Sendable, Equatable {
    /// Locating the binaries and checking the data directory.
    case checking
    /// Running `initdb` for a new cluster (seconds to a minute).
    case initialisingCluster
    /// The server process runs and is starting up.
    case starting
    /// The server is replaying WAL after an unclean shutdown (can take long).
    case recovering
}
